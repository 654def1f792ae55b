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
    ConductorClient,
)
from prefect_conductor.conductor_cloud.errors import UserError, is_transient
from prefect_conductor.conductor_cloud.run_parameters import RunOptions


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
    """Prefect retry condition: retry what a later attempt can fix, never a user's own mistake.

    The decision is :func:`errors.is_transient`, read off the error itself, so it cannot depend
    on the order of ``except`` clauses.
    """
    try:
        state.result()  # type: ignore[attr-defined]
    except Exception as error:
        return is_transient(error)
    return True
