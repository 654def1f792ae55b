"""Where Refresh, Preview and Submit get the account's catalogue from.

Refresh reuses the per-user catalogue file when it is fresh and was fetched from the same
Conductor, without signing in at all; otherwise it signs in (the client exchanges the API key for
a token, cached per user) and fetches projects, instance types, packages and extra environment,
then rewrites the file. Preview and Submit never fetch: they read the file Refresh wrote, so
they work offline and never wait on Conductor.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.refresh import DEFAULT_MAX_AGE, refresh_catalog
from prefect_conductor.conductor_cloud.errors import InputFileError
from prefect_conductor.conductor_cloud.job.catalog import (
    Catalog,
    default_catalog_path,
    load_catalog,
)
from prefect_conductor.conductor_cloud.settings import get_settings


def conductor_url(url: str | None = None) -> str:
    """The Conductor address: given, else CONDUCTOR_URL, else Conductor's own."""
    return (url or get_settings().conductor_url).rstrip("/")


def cached(path: Path | None = None) -> Catalog | None:
    """The catalogue file's content, or None when Refresh has not written one yet."""
    target = path or default_catalog_path()
    if not target.exists():
        return None
    return load_catalog(target)


def catalog_for_refresh(
    *,
    url: str | None = None,
    api_key: str | None = None,
    path: Path | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> tuple[Catalog, bool]:
    """The catalogue for Refresh, and whether it was fetched (False: the fresh file was used).

    ``api_key`` is the key's text (JSON or base64); None reads CONDUCTOR_API_KEY or
    CONDUCTOR_API_KEY_PATH. A damaged file is replaced by a fetch, never reported.
    """
    target_url = conductor_url(url)
    try:
        existing = cached(path)
    except InputFileError:
        existing = None
    if existing is not None and existing.source_url == target_url and existing.age <= max_age:
        return existing, False
    key = ApiKey.from_text(api_key) if api_key else None
    with ConductorClient(target_url, key) as client:
        fetched, _ = refresh_catalog(client, path)
    return fetched, True
