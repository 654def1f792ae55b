"""What every task shares: a Conductor client built from run options, and one retry rule.

The API key comes from a Prefect Secret block named in ``RunOptions.credentials_block`` (loaded
here, inside the run, so it is never a flow parameter) or from the worker's environment.

Retries are layered (research/prefect-notes.md section 4): the client's tenacity policy rides out
blips within one HTTP call; a Prefect retry re-runs a whole step, and only for failures that a
later attempt can fix. A user's own mistake (a bad field, a rejected request) is never retried.
"""

from __future__ import annotations

import json
from typing import cast

from prefect_conductor.conductor_cloud.auth import ApiKey
from prefect_conductor.conductor_cloud.client import (
    AmbiguousSubmitError,
    ConductorClient,
    ConductorUnavailable,
    ServerError,
)
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.uploads import UploadError

TRANSIENT_ERRORS: tuple[type[UserError], ...] = (
    ServerError,
    ConductorUnavailable,
    AmbiguousSubmitError,
    UploadError,
)
"""Failures a later attempt of the whole step can fix. AmbiguousSubmitError is safe to retry:
the submit step looks its submission id up before posting. UploadError covers storage hosts that
kept failing; a new attempt asks for fresh signed URLs and hashes nothing again (md5 cache)."""


def api_key_for(options: RunOptions) -> ApiKey | None:
    """The key from the named Secret block, or None to use CONDUCTOR_API_KEY(_PATH)."""
    if not options.credentials_block:
        return None
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret, Secret.load(options.credentials_block))
    except ValueError:
        raise UserError(
            f"credentials_block: no Secret block named {options.credentials_block!r}"
        ) from None
    value = secret.get()
    text = value if isinstance(value, str) else json.dumps(value)
    return ApiKey.from_text(text, source=f"credentials_block {options.credentials_block!r}")


def client_for(options: RunOptions) -> ConductorClient:
    """A client for the run's Conductor (options first, then CONDUCTOR_URL)."""
    return ConductorClient(options.conductor_url, api_key_for(options))


def never_retry_user_errors(task: object, task_run: object, state: object) -> bool:
    """Prefect retry condition: retry transient failures, never a user's own mistake."""
    try:
        state.result()  # type: ignore[attr-defined]
    except TRANSIENT_ERRORS:
        return True
    except UserError:
        return False
    except Exception:
        return True
    return True
