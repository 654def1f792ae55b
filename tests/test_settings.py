"""One settings source: every per-user file lives under the same folder, ``~`` means home."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.api.auth import api_key_from_env, default_token_dir
from prefect_conductor.conductor_cloud.job.catalog import default_catalog_path
from prefect_conductor.conductor_cloud.settings import DEFAULT_CONDUCTOR_URL, get_settings
from prefect_conductor.conductor_cloud.transfers.md5cache import default_cache_path
from prefect_conductor.conductor_cloud.transfers.staging import default_staging_dir


def test_tilde_in_the_home_setting_is_the_users_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", "~/pc")
    home = Path.home() / "pc"
    assert default_token_dir() == home / "tokens"
    assert default_cache_path() == home / "md5.sqlite"
    assert default_catalog_path() == home / "catalog.json"
    assert default_staging_dir() == home / "staging"


def test_every_per_user_file_follows_xdg_when_home_is_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFECT_CONDUCTOR_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    home = tmp_path / "prefect-conductor"
    assert {default_token_dir().parent, default_cache_path().parent} == {home}
    assert {default_catalog_path().parent, default_staging_dir().parent} == {home}


def test_blank_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUCTOR_URL", "  ")
    monkeypatch.setenv("CONDUCTOR_API_KEY", "")
    monkeypatch.setenv("CONDUCTOR_API_KEY_PATH", "")
    settings = get_settings()
    assert settings.conductor_url == DEFAULT_CONDUCTOR_URL
    assert api_key_from_env() is None


def test_the_api_key_is_masked_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUCTOR_API_KEY", '{"client_id": "c", "private_key": "pk-secret-77"}')
    assert "pk-secret-77" not in repr(get_settings())
    assert "pk-secret-77" not in str(get_settings())
