"""What every task shares: a Conductor client built from run options, and one retry rule.

The API key comes from a ConductorCredentials block (or a generic Secret block) named in
``RunOptions.credentials_block`` (loaded here, inside the run, so it is never a flow parameter) or
from the worker's environment.

Retries are layered (research/prefect-notes.md section 4): the client's tenacity policy rides out
blips within one HTTP call; a Prefect retry re-runs a whole step, and only for failures that a
later attempt can fix. A user's own mistake (a bad field, a rejected request) is never retried.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import (
    ConductorClient,
)
from prefect_conductor.conductor_cloud.errors import UserError, is_transient
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions

if TYPE_CHECKING:
    from prefect_conductor.blocks import ConductorCredentials


def _load_credentials(name: str) -> ConductorCredentials | None:
    """The ConductorCredentials block called ``name`` (``conductor-credentials/`` optional)."""
    from prefect_conductor.blocks import ConductorCredentials

    bare = name.removeprefix("conductor-credentials/")
    try:
        return cast(ConductorCredentials, ConductorCredentials.load(bare))
    except ValueError:
        return None


def _load_secret(name: str) -> str | None:
    """The text of the generic Secret block called ``name`` (``secret/`` optional)."""
    from prefect.blocks.system import Secret

    try:
        secret = cast(Secret, Secret.load(name.removeprefix("secret/")))
    except ValueError:
        return None
    value = secret.get()
    return value if isinstance(value, str) else json.dumps(value)


def credentials_for(options: RunOptions) -> tuple[str | None, ApiKey | None]:
    """Conductor's URL and key for a run: the named block's, else the worker's environment.

    ``credentials_block`` names a ConductorCredentials block (key and URL) or a generic Secret
    block (key only); empty means CONDUCTOR_API_KEY(_PATH) and CONDUCTOR_URL. The run option
    ``conductor_url`` wins over a block's URL. Loaded here, inside the run, so the key is never a
    flow parameter.
    """
    name = options.credentials_block
    url = options.conductor_url or None
    if not name:
        return url, None
    source = f"credentials_block {name!r}"
    block = None if name.startswith("secret/") else _load_credentials(name)
    if block is not None:
        return url or block.conductor_url or None, block.api_key_value(source)
    text = None if name.startswith("conductor-credentials/") else _load_secret(name)
    if text is None:
        raise UserError(
            f"credentials_block: no ConductorCredentials or Secret block named {name!r}"
        )
    return url, ApiKey.from_text(text, source=source)


def api_key_for(options: RunOptions) -> ApiKey | None:
    """The key from the named block, or None to use CONDUCTOR_API_KEY(_PATH)."""
    return credentials_for(options)[1]


def client_for(options: RunOptions) -> ConductorClient:
    """A client for the run's Conductor (options, then the block, then CONDUCTOR_URL)."""
    url, key = credentials_for(options)
    return ConductorClient(url, key)


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
