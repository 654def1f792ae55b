"""The account's catalogue: projects, instance types, packages and extra environment.

The ``refresh_catalog`` flow and the host's Refresh button fetch it; ``preview`` and validation
read it from a per-user cache file with its time stamp, so they work offline. API records are
read, never changed: the reference client rewrites instance-type descriptions in place, sorts
memory as text and drops uncategorised types; here labels and ordering are derived, memory is a
number whether the server sends ``"7.2"`` or ``7.2``, and nothing is dropped except records we
cannot use, which are listed in ``Catalog.skipped``.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from prefect_conductor.conductor_cloud.errors import FieldError, InputFileError
from prefect_conductor.conductor_cloud.job.environment import EnvEntry
from prefect_conductor.conductor_cloud.job.loaders import read_mapping, validation_problems
from prefect_conductor.conductor_cloud.job.packages import PLATFORMS, Package, PackageCatalog
from prefect_conductor.conductor_cloud.settings import get_settings

UTC = timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+; host_export runs on 3.10)

NUMBER = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:gb|gib)?\s*$", re.IGNORECASE)


def _gigabytes(value: Any) -> Any:
    """Memory as a number: the API sends ``"120"``, ``"7.2"``, ``30`` or ``30.0``."""
    if value is None or value == "":
        return 0.0
    if isinstance(value, str):
        match = NUMBER.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a number of GB")
        return float(match.group(1))
    return value


def _gb_text(value: float) -> str:
    """``30``, ``28.8``: one decimal at most, no trailing zeros, never scientific notation."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


class GpuInfo(BaseModel):
    """The GPU part of an instance-type record (memory in GB, strings parsed)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    gpu_count: int = Field(default=0, ge=0)
    gpu_model: str = ""
    gpu_memory_gb: float = Field(
        default=0.0, ge=0, validation_alias=AliasChoices("gpu_memory_gb", "gpu_memory")
    )
    gpu_architecture: str = ""
    gpu_cuda_cores: int | None = None
    gpu_rt_cores: int | None = None
    gpu_tensor_cores: int | None = None
    total_gpu_memory_gb: float | None = Field(
        default=None, validation_alias=AliasChoices("total_gpu_memory_gb", "total_gpu_memory")
    )

    @field_validator("gpu_memory_gb", "total_gpu_memory_gb", mode="before")
    @classmethod
    def _memory_number(cls, value: Any) -> Any:
        return _gigabytes(value)


class Category(BaseModel):
    """A menu group the server may attach to an instance type."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    label: str
    order: int = 0


class InstanceType(BaseModel):
    """An instance-type record as ``api/v1/instance-types`` returns it (unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    cores: int = Field(ge=1)
    memory_gb: float = Field(ge=0, validation_alias=AliasChoices("memory_gb", "memory"))
    operating_system: Literal["linux", "windows"] = "linux"
    gpu: GpuInfo | None = None
    categories: list[Category] = Field(default_factory=list)

    @field_validator("memory_gb", mode="before")
    @classmethod
    def _memory_number(cls, value: Any) -> Any:
        return _gigabytes(value)

    @field_validator("categories", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def kind(self) -> Literal["cpu", "gpu"]:
        return "gpu" if self.gpu is not None and self.gpu.gpu_count > 0 else "cpu"

    @property
    def label(self) -> str:
        """Our own menu label: ``8 cores, 30 GB`` or ``8 cores, 30 GB, 1 x Tesla T4 16 GB``.

        Derived, so the server's ``description`` is kept as it came. Windows types say so, since
        one menu may hold both.
        """
        text = f"{self.cores} core{'s' if self.cores != 1 else ''}, {_gb_text(self.memory_gb)} GB"
        if self.gpu is not None and self.gpu.gpu_count > 0:
            text += (
                f", {self.gpu.gpu_count} x {self.gpu.gpu_model or 'GPU'}"
                f" {_gb_text(self.gpu.gpu_memory_gb)} GB"
            )
        if self.operating_system != "linux":
            text += f" ({self.operating_system})"
        return text

    @property
    def sort_key(self) -> tuple[int, int, float, int, str, str]:
        """CPU before GPU, then cores, memory and GPU count as numbers."""
        gpus = self.gpu.gpu_count if self.gpu is not None else 0
        return (
            1 if self.kind == "gpu" else 0,
            self.cores,
            self.memory_gb,
            gpus,
            self.operating_system,
            self.name,
        )


class Catalog(BaseModel):
    """Everything the submitter's menus and checks need, with when and where it was fetched.

    ``projects`` holds active project names (case-insensitive order); ``inactive_projects`` is
    kept only to explain why such a name is refused. ``skipped`` lists, one line each, the API
    records that could not be used, so a refresh can say so instead of silently shrinking menus.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fetched_at: datetime
    source_url: str
    projects: list[str]
    inactive_projects: list[str] = Field(default_factory=list)
    instance_types: list[InstanceType]
    packages: list[Package]
    extra_environment: list[EnvEntry] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)

    @field_validator("fetched_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """A time stamp without a zone (hand-edited file) is taken as UTC, so ``age`` works."""
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    @field_validator("projects", "inactive_projects")
    @classmethod
    def _sorted_names(cls, value: list[str]) -> list[str]:
        return sorted(dict.fromkeys(value), key=lambda name: (name.casefold(), name))

    @field_validator("instance_types")
    @classmethod
    def _sorted_types(cls, value: list[InstanceType]) -> list[InstanceType]:
        return sorted(value, key=lambda t: t.sort_key)

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
        """Build from raw API records, which are not modified.

        Projects whose ``status`` is not ``active`` are left out of the menu (a record without a
        status counts as active). Instance types and packages that cannot be read are skipped and
        noted. ``extra_env`` may be the endpoint's ``[{account_id, env}]`` list or a bare list of
        entries; entries may be ``{name, value, merge_policy}`` dicts or ``"NAME=value"`` strings.
        """
        skipped: list[str] = []
        active, inactive = _project_names(projects, skipped)
        types = _instance_types(instance_types, skipped)
        package_catalog = PackageCatalog(packages, platforms=PLATFORMS)
        skipped.extend(package_catalog.skipped)
        return cls(
            fetched_at=datetime.now(UTC),
            source_url=source_url,
            projects=active,
            inactive_projects=inactive,
            instance_types=types,
            packages=package_catalog.packages,
            extra_environment=account_environment(extra_env, account_id, skipped),
            skipped=skipped,
        )

    @cached_property
    def _package_catalog(self) -> PackageCatalog:
        return PackageCatalog(self.packages, platforms=PLATFORMS)

    def package_catalog(self) -> PackageCatalog:
        """The packages as a searchable catalogue (both platforms; lookups pick one)."""
        return self._package_catalog

    def find_instance_type(self, name: str) -> InstanceType:
        """The instance type of this exact name, or a FieldError for ``instance_type``."""
        for instance in self.instance_types:
            if instance.name == name:
                return instance
        names = [t.name for t in self.instance_types]
        raise FieldError("instance_type", f"unknown instance type {name!r}{_hint(name, names)}")

    def require_project(self, name: str) -> str:
        """The project name as Conductor spells it, or a FieldError for ``project``."""
        if name in self.projects:
            return name
        if name in self.inactive_projects:
            raise FieldError(
                "project", f"unknown project {name!r}: it is inactive on Conductor; pick another"
            )
        same = [p for p in self.projects if p.casefold() == name.casefold()]
        hint = f"; did you mean {same[0]!r}?" if same else _hint(name, self.projects)
        raise FieldError("project", f"unknown project {name!r}{hint}")

    @property
    def age(self) -> timedelta:
        """How long ago the catalogue was fetched."""
        return datetime.now(UTC) - self.fetched_at


def _hint(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _project_names(records: Iterable[Any], skipped: list[str]) -> tuple[list[str], list[str]]:
    """(active, inactive) project names; a bare string counts as an active name."""
    active: list[str] = []
    inactive: list[str] = []
    for index, record in enumerate(records):
        if isinstance(record, str) and record:
            active.append(record)
        elif isinstance(record, Mapping) and isinstance(record.get("name"), str):
            status = record.get("status", "active")
            (active if status == "active" else inactive).append(record["name"])
        else:
            skipped.append(f"projects[{index}]: no name")
    return active, inactive


def _instance_types(records: Iterable[Any], skipped: list[str]) -> list[InstanceType]:
    types: list[InstanceType] = []
    for index, record in enumerate(records):
        try:
            types.append(InstanceType.model_validate(record))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "record"
            name = record.get("name") if isinstance(record, Mapping) else None
            message = first["msg"].removeprefix("Value error, ")
            skipped.append(f"instance_types[{index}] ({name}): {field}: {message}")
    return types


def account_environment(
    records: Any, account_id: str | None, skipped: list[str] | None = None
) -> list[EnvEntry]:
    """The account's extra environment from whichever shape the API sends.

    The endpoint answers ``[{account_id, env}]``; with ``account_id`` only that account's entry
    counts (none found: no extra environment). Without one, a single record is taken, or the
    first of several with a note in ``skipped``. A bare list of entries (or a single
    ``{account_id, env}`` mapping) is accepted too. Entries are ``{name, value, merge_policy}``
    dicts or ``"NAME=value"`` strings (taken as exclusive); unreadable ones are noted and dropped.
    """
    notes = skipped if skipped is not None else []
    if isinstance(records, Mapping):
        records = [records]
    if not isinstance(records, list):
        notes.append("extra_environment: not a list")
        return []
    accounts = [r for r in records if isinstance(r, Mapping) and "env" in r]
    if accounts:
        if account_id is not None:
            accounts = [r for r in accounts if r.get("account_id") == account_id]
        elif len(accounts) > 1:
            notes.append(
                f"extra_environment: {len(accounts)} accounts and no account id; used the first"
                f" ({accounts[0].get('account_id')})"
            )
        items: list[Any] = list(accounts[0].get("env") or []) if accounts else []
    else:
        items = records
    entries: list[EnvEntry] = []
    for index, item in enumerate(items):
        entry = _env_entry(item)
        if entry is None:
            notes.append(f"extra_environment[{index}]: not NAME=value nor {{name, value}}")
        else:
            entries.append(entry)
    return entries


def _env_entry(item: Any) -> EnvEntry | None:
    if isinstance(item, str):
        name, equals, value = item.partition("=")
        if equals and name.strip():
            return EnvEntry(name=name.strip(), value=value, merge_policy="exclusive")
        return None
    if isinstance(item, Mapping) and item.get("name"):
        try:
            return EnvEntry.model_validate(dict(item))
        except ValidationError:
            return None
    return None


def default_catalog_path() -> Path:
    """Where ``refresh`` stores the catalogue and ``preview`` reads it."""
    return get_settings().catalog_path


def save_catalog(catalog: Catalog, path: Path | None = None) -> Path:
    """Write atomically (temp file, fsync, rename) with 0600 permissions; returns the path.

    A reader never sees a half-written file, and a crash leaves the previous catalogue intact.
    """
    target = path or default_catalog_path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".catalog-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(catalog.model_dump_json(indent=1))
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def writable_by_others(path: Path) -> bool:
    """Whether someone other than us could have written ``path`` (owner, group or world bits)."""
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return True
    return bool(stat.S_IMODE(info.st_mode) & 0o022)


def check_cache_private(target: Path) -> None:
    """Refuse the catalogue cache when another user could have written it or its folder.

    The cache decides which packages and environment every job gets, so a poisoned one is trusted
    as much as a poisoned md5 or token cache would be: like those, it is not used. An explicit
    ``--catalog`` file is the caller's own choice and is read as given.
    """
    for where in (target, target.parent):
        if writable_by_others(where):
            raise InputFileError(
                str(target),
                [
                    f"{target}: the catalogue cache is not used: {where} can be written by other"
                    " users (make it yours and `chmod go-w` it, then run `prefect-conductor"
                    " refresh`)"
                ],
            )


def load_catalog(path: Path | None = None) -> Catalog:
    """Read a catalogue file; every problem is a line of an InputFileError naming the file."""
    target = path or default_catalog_path()
    is_cache = target.absolute() == default_catalog_path().absolute()
    if is_cache and not target.exists():
        raise InputFileError(
            str(target),
            [f"{target}: no catalogue yet; run `prefect-conductor refresh` or pass --catalog"],
        )
    if is_cache:
        check_cache_private(target)
    data = read_mapping(target)
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        raise InputFileError(str(target), validation_problems(str(target), error)) from None
