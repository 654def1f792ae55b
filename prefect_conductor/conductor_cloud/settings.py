"""Every setting the submitter reads from the environment, in one place.

``PREFECT_CONDUCTOR_*``, ``CONDUCTOR_URL``, ``CONDUCTOR_API_KEY(_PATH)`` and the per-user folder are
read here and nowhere else, so a value means the same thing to every module (the token cache, the
md5 cache, the catalogue and the staging folder once each decided the per-user folder on their own,
and disagreed about ``~``). Settings are read when :func:`get_settings` is called, not at import,
so a test or a worker that changes its environment is seen at once.

The API key is a ``SecretStr``: its repr and str are masked, so a settings object can be logged.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prefect_conductor.conductor_cloud.errors import UserError

DEFAULT_CONDUCTOR_URL = "https://dashboard.conductortech.com"
DEFAULT_API_URL = "https://api.conductortech.com"
"""Where Conductor's own clients read task listings (``api/v1/tasks``); the dashboard host has
no such route as far as any client shows."""
DEFAULT_LICENSE_SERVER = "conductor_ilise:40500"
"""The host's license server on Conductor's render nodes, as Conductor's own submitter sends it."""
DEFAULT_HOST_BATCH = "jobs -batch"
DEFAULT_MAX_METADATA_KEYS = 256


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
    api_url: str = Field(
        default="",
        validation_alias=AliasChoices("CONDUCTOR_API_URL", "PREFECT_CONDUCTOR_API_URL"),
        description=(
            "Conductor's API host, for task listings. Empty: https://api.conductortech.com with"
            " Conductor's own dashboard, else the Conductor address itself (a sandbox serves"
            " both)."
        ),
    )
    license_server: str = Field(
        default=DEFAULT_LICENSE_SERVER,
        pattern=r"^[A-Za-z0-9_.@:-]+$",
        description=(
            "The host's license server that the default render command names (host:port);"
            " a job's own license_server wins."
        ),
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

    def api_address(self, conductor_url: str) -> str:
        """The API host for ``conductor_url``: the setting, else the evidenced default."""
        if self.api_url.strip():
            return self.api_url.strip().rstrip("/")
        if conductor_url.rstrip("/") == DEFAULT_CONDUCTOR_URL:
            return DEFAULT_API_URL
        return conductor_url.rstrip("/")

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

    submit_lookup_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description=(
            "After a job POST that may have reached Conductor (a timeout, a dropped connection,"
            " a 5xx), how long to keep looking for the job before failing the run instead of"
            " posting again."
        ),
    )
    submission_lookback_days: int = Field(
        default=1,
        ge=1,
        le=366,
        description=(
            "The duplicate-job guard lists jobs created since this many days before the"
            " submission's first attempt."
        ),
    )

    # Resource bounds: refused with one line before anything big is built.
    max_frames: int = Field(
        default=10_000_000,
        ge=1,
        description=(
            "Most frames one frame spec or image range may hold; more is a typo that would"
            " exhaust memory before anything is sent."
        ),
    )
    max_tiles: int = Field(
        default=1024, ge=1, description="Most tiles per frame (each tile is its own task)."
    )
    max_tasks_per_job: int = Field(
        default=100_000,
        ge=1,
        description=(
            "Most tasks one job may have (chunks times tiles); a larger chunk size makes fewer."
        ),
    )

    # reliability: concurrent submissions, upload roots, input limits --------------------------

    upload_roots: str = Field(
        default="",
        description=(
            "Folders (os.pathsep-separated) a scene may upload from besides its project folder;"
            " anything else is refused."
        ),
    )
    max_metadata_keys: int = Field(
        default=DEFAULT_MAX_METADATA_KEYS,
        ge=0,
        description="Most metadata labels one job may carry.",
    )
    max_input_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest job file, scene export or catalogue read (bytes).",
    )
    submit_lock_buckets: int = Field(
        default=64,
        ge=1,
        le=4096,
        description=(
            "How many Prefect concurrency limits (prefect-conductor-submit-N) the submission ids"
            " are hashed onto; each serialises lookup-then-post for its ids."
        ),
    )
    submit_lock_wait_seconds: float = Field(
        default=900.0,
        gt=0,
        description="How long a run waits for another run posting the same submission id.",
    )

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

    @property
    def upload_root_paths(self) -> tuple[Path, ...]:
        """``upload_roots`` as absolute paths (``~`` expanded, empty entries skipped)."""
        parts = (part.strip() for part in self.upload_roots.split(os.pathsep))
        return tuple(Path(part).expanduser().absolute() for part in parts if part)

    @field_validator("conductor_url", mode="after")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        """A malformed address is one line naming the variable, not an httpx traceback later."""
        return _checked_url(value)

    @field_validator("home", mode="after")
    @classmethod
    def _home_is_a_folder(cls, value: Path) -> Path:
        """The per-user folder (or its nearest existing parent) must be a folder, not a file."""
        probe = value
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            where = "is" if probe == value else f"is inside {probe}, which is"
            raise ValueError(f"{value} {where} a file, not a folder")
        return value

    # cost: a budget per project when the job names none --------------------------------------

    project_budgets: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Each project's default budget for one submission's full job, in the prices'"
            ' currency, as JSON (for example {"Shot Project": 250}); a job\'s own budget wins.'
        ),
    )

    @field_validator("project_budgets", mode="after")
    @classmethod
    def _budgets_are_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        for project, amount in value.items():
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"{project[:80]!r}: a budget must be a finite number >= 0")
        return value

    # waiting for renders: the watcher that resumes suspended runs -----------------------------

    watch_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description=(
            "How often the watcher asks Conductor about the jobs suspended runs wait for; it runs"
            " only while some run waits."
        ),
    )
    frames_resume_seconds: float = Field(
        default=180.0,
        ge=0,
        le=86400,
        description=(
            "A deployed run following its job's frames waits suspended at least this long before"
            " the watcher resumes it to download tasks that succeeded meanwhile (the job's end"
            " resumes it at once), so a job of many tasks does not resume it once per task."
        ),
    )
    watcher_deployment: str = Field(
        default="watch-jobs/resume-waiting-runs",
        pattern=r"^[^/\s]+/[^/\s]+$",
        description=(
            "The watch-jobs deployment (flow/deployment) a suspending run starts when no watcher"
            " is running."
        ),
    )

    # studio scale: Conductor's limits held across every worker --------------------------------

    job_post_limit_name: str = Field(
        default="prefect-conductor-job-posts",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description=(
            "The Prefect global concurrency limit every worker takes around a job's lookup and"
            " POST jobs/."
        ),
    )
    job_post_limit: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="How many job lookups-and-posts may run at once across all workers.",
    )
    upload_limit_name: str = Field(
        default="prefect-conductor-uploads",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The Prefect global concurrency limit every worker takes around its uploads.",
    )
    upload_limit: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="How many runs may upload at once across all workers.",
    )
    limit_wait_seconds: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "How long a run waits for a job-post or upload slot before failing (transient: the"
            " step retries)."
        ),
    )


def _checked_url(value: str) -> str:
    """``value`` if it is an http(s) address with a host; else ValueError saying what is wrong."""
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, ValueError, TypeError):
        # httpx's reason may quote the address, and an address may carry credentials.
        raise ValueError("not a valid address (expected http(s)://host[:port])") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// address with a host name")
    return value.strip()


def _variable_for(field: str) -> str:
    """The environment variable a settings field is read from (its first alias, else the prefix)."""
    for name, info in ConductorSettings.model_fields.items():
        alias = info.validation_alias
        if not isinstance(alias, AliasChoices):
            continue
        choices = [choice for choice in alias.choices if isinstance(choice, str)]
        if choices and (field == name or field in choices):
            return choices[0]
    return f"PREFECT_CONDUCTOR_{field.upper()}"


def get_settings() -> ConductorSettings:
    """The settings as the environment says now (cheap; read on every call on purpose).

    A bad value is a UserError naming the variable (``CONDUCTOR_URL: not a valid address``); the
    value itself is not echoed, since a variable may hold a secret.
    """
    try:
        return ConductorSettings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{_variable_for(field)}: {message}") from None
