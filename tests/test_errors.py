"""The error families: user errors and service errors are siblings, and the retry rule reads the
error's own ``transient`` flag, so no ``except`` order can decide it."""

from __future__ import annotations

import pytest

from prefect_conductor.conductor_cloud.api.auth import AuthError
from prefect_conductor.conductor_cloud.api.client import (
    ConductorUnavailable,
    NotFoundError,
    RequestRejected,
    ServerError,
    SubmissionUnresolved,
)
from prefect_conductor.conductor_cloud.errors import (
    FieldError,
    ServiceError,
    SubmitterError,
    UserError,
    is_transient,
)
from prefect_conductor.conductor_cloud.transfers.uploads import UploadError
from prefect_conductor.tasks.common import never_retry_user_errors
from prefect_conductor.tasks.submit import ScoutFailed


class _State:
    """The one thing a retry condition reads of a Prefect state: ``result()`` raising."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def result(self) -> None:
        if self.error is not None:
            raise self.error


SERVICE_ERRORS = [AuthError, NotFoundError, RequestRejected, ServerError, ConductorUnavailable]


@pytest.mark.parametrize("kind", [*SERVICE_ERRORS, SubmissionUnresolved, UploadError])
def test_a_service_failure_is_never_the_users_mistake(kind: type[Exception]) -> None:
    assert issubclass(kind, ServiceError)
    assert not issubclass(kind, UserError)


def test_both_families_share_one_base_with_an_exit_code() -> None:
    assert issubclass(UserError, SubmitterError) and issubclass(ServiceError, SubmitterError)
    assert UserError("x").exit_code == 2
    assert ServerError("x").exit_code == 3
    assert str(UserError("two\nlines")) == "two lines"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServerError("503 from Conductor"), True),
        (ConductorUnavailable("connection refused"), True),
        (SubmissionUnresolved("POST may have reached Conductor"), False),
        (UploadError("/a.tx", "storage kept failing"), True),
        (RequestRejected("400"), False),
        (AuthError("bad key"), False),
        (NotFoundError("404"), False),
        (FieldError("chunk_size", "must be at least 1"), False),
        (ScoutFailed("scout tasks failed"), False),
        (RuntimeError("a bug"), True),
    ],
)
def test_the_retry_rule_reads_the_error_not_the_clause_order(
    error: Exception, retried: bool
) -> None:
    assert is_transient(error) is retried
    assert never_retry_user_errors(None, None, _State(error)) is retried


def test_a_user_error_that_claims_to_be_transient_is_still_decided_by_its_flag() -> None:
    """A subclass's flag wins over its family: no clause order can overrule it."""

    class Busy(UserError):
        transient = True

    assert never_retry_user_errors(None, None, _State(Busy("try later"))) is True
