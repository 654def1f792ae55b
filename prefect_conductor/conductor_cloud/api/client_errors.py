"""The Conductor client's errors: one per way a call can end badly, each one line, none secret.

They are :class:`~prefect_conductor.conductor_cloud.errors.ServiceError` subclasses (CLI exit 3);
``transient`` says whether running the same step again may help (``errors.is_transient``).
:class:`ConductorError` adds one thing to ``ServiceError``: the URL it carries loses its query
(signatures, the token exchange's secret) and user info before it is stored.
"""

from __future__ import annotations

from typing import Any

from prefect_conductor.conductor_cloud.api.retry import redacted_url
from prefect_conductor.conductor_cloud.errors import ServiceError

__all__ = [
    "ConductorError",
    "ConductorUnavailable",
    "NotFoundError",
    "RequestRejected",
    "ServerError",
    "SubmissionUnresolved",
]


class ConductorError(ServiceError):
    """A Conductor call failed. Carries method, URL (no query) and status; never a secret."""

    def __init__(self, message: str, **fields: Any) -> None:
        if fields.get("url"):
            fields["url"] = redacted_url(fields["url"])
        super().__init__(message, **fields)


class ConductorUnavailable(ConductorError):
    """Conductor could not be reached, or timed out, after the retries."""

    transient = True


class NotFoundError(ConductorError):
    """404, or a listing without the record asked for: the thing does not exist."""


class RequestRejected(ConductorError):
    """Another 4xx: Conductor refused the request as made; retrying cannot help."""


class ServerError(ConductorError):
    """5xx (or 408/425/429) after the retries ran out, or an answer we cannot read."""

    transient = True


class SubmissionUnresolved(ConductorError):
    """A job POST may have reached Conductor and no lookup could find the job in time.

    Not transient: posting again could make a second job, and retrying the step would only
    repeat the lookup that just failed. A person checks the dashboard and decides
    (docs/protocol.md).
    """
