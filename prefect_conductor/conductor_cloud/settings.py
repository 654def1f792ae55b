"""Every setting the submitter reads from the environment, in one place.

``PREFECT_CONDUCTOR_*``, ``CONDUCTOR_URL``, ``CONDUCTOR_API_KEY(_PATH)`` and the per-user folder are
read here and nowhere else, so a value means the same thing to every module (the token cache, the
md5 cache, the catalogue and the staging folder once each decided the per-user folder on their own,
and disagreed about ``~``). Settings are read when :func:`get_settings` is called, not at import,
so a test or a worker that changes its environment is seen at once.

The API key is a ``SecretStr``: its repr and str are masked, so a settings object can be logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_CONDUCTOR_URL = "https://dashboard.conductortech.com"
DEFAULT_HOST_BATCH = "jobs -batch"


def _default_home() -> Path:
    """``$XDG_CACHE_HOME/prefect-conductor``, else ``~/.cache/prefect-conductor``."""
    cache_root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_root).expanduser() / "prefect-conductor"


class ConductorSettings(BaseSettings):
    """The submitter's settings: per-user folder, Conductor's address and key, the host command."""

    model_config = SettingsConfigDict(
        env_prefix="PREFECT_CONDUCTOR_", extra="ignore", frozen=True, populate_by_name=True
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Per-user folder for caches (md5s, tokens, catalogue, staged packages).",
    )
    conductor_url: str = Field(
        default=DEFAULT_CONDUCTOR_URL,
        validation_alias=AliasChoices("CONDUCTOR_URL", "PREFECT_CONDUCTOR_URL"),
        description="Conductor's address; the sandbox prints its own.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CONDUCTOR_API_KEY"),
        description="The API key itself (JSON or base64 JSON).",
    )
    api_key_path: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CONDUCTOR_API_KEY_PATH"),
        description="A file holding the API key.",
    )
    host_batch: str = Field(
        default=DEFAULT_HOST_BATCH,
        description="The host's batch command (shell words) that exports a saved project.",
    )

    @field_validator("home", "api_key_path", mode="after")
    @classmethod
    def _expand_user(cls, value: Path | None) -> Path | None:
        """``~/pc`` means the user's folder, never a literal ``~`` folder in the working dir."""
        return value.expanduser() if value is not None else None

    @field_validator("conductor_url", mode="before")
    @classmethod
    def _blank_url_is_default(cls, value: object) -> object:
        """An empty ``CONDUCTOR_URL=`` means the default, as it did before settings existed."""
        if isinstance(value, str) and not value.strip():
            return DEFAULT_CONDUCTOR_URL
        return value

    @field_validator("api_key", "api_key_path", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable is the same as an unset one."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def token_dir(self) -> Path:
        """Cached Conductor tokens, one 0600 file per URL and client id."""
        return self.home / "tokens"

    @property
    def md5_cache_path(self) -> Path:
        """The md5 cache (path, size, mtime_ns, inode -> md5)."""
        return self.home / "md5.sqlite"

    @property
    def catalog_path(self) -> Path:
        """Where ``refresh`` stores the catalogue and ``preview`` reads it."""
        return self.home / "catalog.json"

    @property
    def staging_dir(self) -> Path:
        """Render packages staged for upload."""
        return self.home / "staging"

    server_idle_minutes: float = Field(
        default=30.0,
        gt=0,
        description="Minutes without flow-run activity after which the CLI's local Prefect"
        " server stops itself.",
    )

    @property
    def prefect_server_dir(self) -> Path:
        """The CLI's local Prefect server: its PREFECT_HOME, state file, lock and log."""
        return self.home / "prefect-server"


def get_settings() -> ConductorSettings:
    """The settings as the environment says now (cheap; read on every call on purpose)."""
    return ConductorSettings()
