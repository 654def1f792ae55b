"""Where Refresh gets the catalogue: the fresh cache file without signing in, else the sandbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKeyError
from prefect_conductor.conductor_cloud.job.catalog import load_catalog
from prefect_conductor.host_export.catalog_source import cached, catalog_for_refresh
from prefect_conductor.sandbox.handle import SandboxHandle

ALWAYS_DOWN = {"method": "*", "path": "/api/*", "action": "drop_before", "times": 0}
"""Every API call, the token exchange included, loses its connection."""


def test_the_first_refresh_fetches_and_later_ones_use_the_fresh_file(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.json"
    assert cached(path) is None
    fetched, from_network = catalog_for_refresh(url=sandbox.url, api_key=sandbox.api_key, path=path)
    assert from_network
    assert "default" in fetched.projects
    assert load_catalog(path).projects == fetched.projects
    sandbox.faults(ALWAYS_DOWN)  # Conductor is unreachable now: the file must be enough
    again, from_network = catalog_for_refresh(url=sandbox.url, api_key=None, path=path)
    assert not from_network
    assert again.projects == fetched.projects


def test_a_stale_file_or_another_conductor_fetches_again(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.json"
    catalog_for_refresh(url=sandbox.url, api_key=sandbox.api_key, path=path)
    _, from_network = catalog_for_refresh(
        url=sandbox.url, api_key=sandbox.api_key, path=path, max_age=timedelta(0)
    )
    assert from_network
    other = sandbox.url.replace("127.0.0.1", "localhost")
    refetched, from_network = catalog_for_refresh(url=other, api_key=sandbox.api_key, path=path)
    assert from_network and refetched.source_url == other


def test_a_damaged_file_is_replaced(sandbox: SandboxHandle, tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text("{not json")
    fetched, from_network = catalog_for_refresh(url=sandbox.url, api_key=sandbox.api_key, path=path)
    assert from_network and load_catalog(path) == fetched


def test_no_key_and_no_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ApiKeyError, match=r"^no Conductor API key: set CONDUCTOR_API_KEY"):
        catalog_for_refresh(url="http://127.0.0.1:9", path=tmp_path / "catalog.json")
