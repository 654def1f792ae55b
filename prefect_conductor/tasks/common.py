"""What every task shares: a Conductor client built from run options, never from parameters.

The API key comes from a Prefect Secret block named in ``RunOptions.credentials_block`` (loaded
here, inside the run, so it is never a flow parameter) or from the worker's environment.
"""

from __future__ import annotations

from typing import cast

from prefect_conductor.conductor_cloud.auth import ApiKey
from prefect_conductor.conductor_cloud.client import ConductorClient
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.request import RunOptions


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
    text = value if isinstance(value, str) else __import__("json").dumps(value)
    return ApiKey.from_text(text, source=f"credentials_block {options.credentials_block!r}")


def client_for(options: RunOptions) -> ConductorClient:
    """A client for the run's Conductor (options first, then CONDUCTOR_URL)."""
    return ConductorClient(options.conductor_url, api_key_for(options))


def never_retry_user_errors(task: object, task_run: object, state: object) -> bool:
    """Prefect retry condition: retry transient failures, never a user's own mistake."""
    try:
        state.result()  # type: ignore[attr-defined]
    except UserError as error:
        from prefect_conductor.conductor_cloud.client import ConductorUnavailable, ServerError

        return isinstance(error, (ServerError, ConductorUnavailable))
    except Exception:
        return True
    return True
