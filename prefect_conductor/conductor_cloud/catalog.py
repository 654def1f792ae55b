"""The account's catalogue: projects, instance types, packages and extra environment.

The ``refresh_catalog`` flow and the host's Refresh button fetch it; ``preview`` and validation
read it from a per-user cache file with its time stamp, so they work offline. Records are read
without being changed (the reference client rewrites instance-type descriptions in place and
sorts memory as text); our own labels and ordering are derived.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_conductor.conductor_cloud.errors import FieldError, InputFileError
from prefect_conductor.conductor_cloud.packages import EnvEntry, Package, PackageCatalog


class GpuInfo(BaseModel):
    """The GPU part of an instance type record."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    gpu_count: int = 0
    gpu_model: str = ""
    gpu_memory: float = 0.0
    gpu_architecture: str = ""


class InstanceType(BaseModel):
    """An instance type record; ``memory`` may arrive as a string (``"7.2"``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    description: str = ""
    cores: int
    memory: float = Field(description="Memory in GB.")
    operating_system: Literal["linux", "windows"] = "linux"
    gpu: GpuInfo | None = None

    @field_validator("memory", mode="before")
    @classmethod
    def _memory_number(cls, value: Any) -> float:
        return float(value)

    @property
    def kind(self) -> Literal["cpu", "gpu"]:
        return "gpu" if self.gpu and self.gpu.gpu_count else "cpu"

    @property
    def label(self) -> str:
        """A readable menu label: ``8 cores, 30 GB`` or ``8 cores, 30 GB, 1 x Tesla T4 16 GB``."""
        text = f"{self.cores} cores, {self.memory:g} GB"
        if self.gpu and self.gpu.gpu_count:
            text += f", {self.gpu.gpu_count} x {self.gpu.gpu_model} {self.gpu.gpu_memory:g} GB"
        if self.operating_system != "linux":
            text += f" ({self.operating_system})"
        return text

    @property
    def sort_key(self) -> tuple[str, int, float, str]:
        return (self.kind, self.cores, self.memory, self.name)


class Catalog(BaseModel):
    """Everything the submitter's menus and checks need, with when and where it was fetched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fetched_at: datetime
    source_url: str
    projects: list[str]
    instance_types: list[InstanceType]
    packages: list[Package]
    extra_environment: list[EnvEntry] = Field(default_factory=list)

    @classmethod
    def from_api(
        cls,
        projects: list[dict[str, Any]],
        instance_types: list[dict[str, Any]],
        packages: list[dict[str, Any]],
        extra_env: list[Any],
        source_url: str,
        account_id: str | None = None,
    ) -> Catalog:
        """Build from raw API records: active projects only, both extra-env shapes accepted."""
        names = sorted(
            {str(p["name"]) for p in projects if p.get("status", "active") == "active"},
            key=str.casefold,
        )
        types = sorted(
            (InstanceType.model_validate(record) for record in instance_types),
            key=lambda t: t.sort_key,
        )
        return cls(
            fetched_at=datetime.now(UTC),
            source_url=source_url,
            projects=names,
            instance_types=types,
            packages=PackageCatalog(packages, platforms=("linux", "windows")).packages,
            extra_environment=account_environment(extra_env, account_id),
        )

    @cached_property
    def _packages(self) -> PackageCatalog:
        return PackageCatalog(self.packages, platforms=("linux", "windows"))

    def package_catalog(self) -> PackageCatalog:
        """The packages as a searchable catalogue (both platforms; hosts filter by platform)."""
        return self._packages

    def find_instance_type(self, name: str) -> InstanceType:
        for instance in self.instance_types:
            if instance.name == name:
                return instance
        raise FieldError(
            "instance_type",
            f"unknown instance type {name!r}{_hint(name, [t.name for t in self.instance_types])}",
        )

    def require_project(self, name: str) -> str:
        if name in self.projects:
            return name
        raise FieldError("project", f"unknown project {name!r}{_hint(name, self.projects)}")

    @property
    def age(self) -> timedelta:
        return datetime.now(UTC) - self.fetched_at


def _hint(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def account_environment(records: list[Any], account_id: str | None) -> list[EnvEntry]:
    """The account's extra environment from either shape the API has been seen to use.

    Records are ``{account_id, env}``; ``env`` items are ``{name, value, merge_policy}`` dicts or
    ``"NAME=value"`` strings. With an account id only that account's entries are taken; without
    one, the first record's (the API answers for the token's own account).
    """
    chosen = [r for r in records if isinstance(r, dict)]
    if account_id is not None:
        chosen = [r for r in chosen if r.get("account_id") == account_id]
    entries: list[EnvEntry] = []
    for record in chosen[:1]:
        for item in record.get("env") or []:
            if isinstance(item, str) and "=" in item:
                name, value = item.split("=", 1)
                entries.append(EnvEntry(name=name.strip(), value=value, merge_policy="exclusive"))
            elif isinstance(item, dict) and "name" in item:
                entries.append(EnvEntry.model_validate(item))
    return entries


def prefect_conductor_home() -> Path:
    """The per-user folder for caches: $PREFECT_CONDUCTOR_HOME or ~/.cache/prefect-conductor."""
    configured = os.environ.get("PREFECT_CONDUCTOR_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "prefect-conductor"


def default_catalog_path() -> Path:
    return prefect_conductor_home() / "catalog.json"


def save_catalog(catalog: Catalog, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) with 0600 permissions; returns the path."""
    target = path or default_catalog_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".catalog-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(catalog.model_dump_json(indent=1))
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def load_catalog(path: Path | None = None) -> Catalog:
    """Read a catalogue file; every problem is a one-line InputFileError naming the file."""
    from prefect_conductor.conductor_cloud.loaders import read_mapping, validation_problems

    target = path or default_catalog_path()
    if path is None and not target.exists():
        raise InputFileError(
            str(target),
            [f"{target}: no catalogue yet; run `prefect-conductor refresh` or pass --catalog"],
        )
    data = read_mapping(target)
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        raise InputFileError(str(target), validation_problems(str(target), error)) from None


def fixture_records() -> dict[str, Any]:
    """The sandbox's catalogue records exactly as its API serves them."""
    text = resources.files("prefect_conductor.conductor_cloud.sandbox").joinpath(
        "fixtures/catalog.json"
    )
    records: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return records


def fixture_catalog() -> Catalog:
    """The sandbox's catalogue as a Catalog, for offline previews and tests."""
    records = fixture_records()
    return Catalog.from_api(
        records["projects"],
        records["instance_types"],
        records["packages"],
        records["extra_environment"],
        source_url="sandbox",
        account_id="sandbox-account",
    )
