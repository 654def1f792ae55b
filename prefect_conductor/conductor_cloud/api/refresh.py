"""Fetch the account's catalogue (projects, instance types, packages, extra environment) once.

Used by the ``refresh_catalog`` flow, the host's Refresh button and ``prefect-conductor refresh``.
The result is cached in a per-user file with its time stamp so ``preview`` works offline and the
host does not ask Conductor on every click.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from pathlib import Path

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.errors import InputFileError, ServiceError
from prefect_conductor.conductor_cloud.job.catalog import Catalog, load_catalog, save_catalog

DEFAULT_MAX_AGE = timedelta(hours=12)
LOG = logging.getLogger(__name__)


def token_account(token: str) -> str | None:
    """The ``account`` claim of a Conductor JWT (read, not verified: it only picks which of the
    listed accounts' extra environment is ours, as the reference client does)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    account = claims.get("account") if isinstance(claims, dict) else None
    return str(account) if account else None


def fetch_catalog(client: ConductorClient) -> Catalog:
    """Ask Conductor for everything the submitter's menus need, in one go.

    The account's extra environment is optional, as in Conductor's own client: when that call
    fails the catalogue has none, with a warning, and everything else still refreshes.
    """
    projects, instance_types, packages = (
        client.projects(),
        client.instance_types(),
        client.packages(),
    )
    try:
        extra_environment = client.extra_environment()
    except ServiceError as error:
        LOG.warning("the account's extra environment is left out: %s", error)
        extra_environment = []
    return Catalog.from_api(
        projects,
        instance_types,
        packages,
        extra_environment,
        source_url=client.shown_url,
        account_id=token_account(client.tokens.token()),
    )


def refresh_catalog(client: ConductorClient, path: Path | None = None) -> tuple[Catalog, Path]:
    """Fetch the catalogue and store it in the cache file; returns it and where it went."""
    catalog = fetch_catalog(client)
    return catalog, save_catalog(catalog, path)


def cached_catalog(
    client: ConductorClient | None,
    path: Path | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> Catalog:
    """The cached catalogue when it is fresh and from the same Conductor, else a fresh fetch.

    Without a client (offline), a cached catalogue of any age is returned, or the loader's
    one-line error when there is none.
    """
    try:
        catalog = load_catalog(path)
    except InputFileError:
        if client is None:
            raise
        return refresh_catalog(client, path)[0]
    if client is None:
        return catalog
    if catalog.age > max_age or catalog.source_url != client.shown_url:
        return refresh_catalog(client, path)[0]
    return catalog
