"""Software packages: the catalogue, host-version matching, plugins, environment merging.

Conductor lists packages as flat records; a host (DCC) package has an empty
``plugin_host_product`` and lists its plugins' ids in ``plugins``. The reference client matches
names as exact strings and sorts versions as text, so ``3.0.10`` sorts before ``3.0.9`` and a
missing exact version simply finds nothing. Here versions compare part by part as numbers, a host
version without an exact package falls back to the nearest one of the same major version, and
every failure is a one-line :class:`PackageError` that names the field and suggests close names.

Environment merging follows Conductor's policies (append, prepend, exclusive) but refuses every
mix of list and scalar for one variable, in either order, and names both sources.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_conductor.conductor_cloud.errors import PackageError

Platform = Literal["linux", "windows"]
PLATFORMS: frozenset[str] = frozenset({"linux", "windows"})
SEPARATORS: Mapping[str, str] = {"linux": ":", "windows": ";"}
VERSION_PART = re.compile(r"(\d+)|([A-Za-z]+)")


class EnvEntry(BaseModel):
    """One environment variable of a package or of the account: name, value, merge policy."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    value: str
    merge_policy: str = "exclusive"


class Package(BaseModel):
    """A software package record as ``api/v1/ee/packages`` returns it (unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    package_id: str
    product: str
    major_version: str = ""
    minor_version: str = ""
    release_version: str = ""
    build_version: str = ""
    platform: Platform = "linux"
    plugin_host_product: str = ""
    plugin_host_version: str = ""
    plugins: list[str] = Field(default_factory=list)
    environment: list[EnvEntry] = Field(default_factory=list)
    vendor: str = ""
    description: str = ""

    @property
    def version(self) -> str:
        """The non-empty version parts joined by dots: ``5.0.10``, ``2022.SP3``."""
        parts = (self.major_version, self.minor_version, self.release_version, self.build_version)
        return ".".join(str(part) for part in parts if str(part))

    @property
    def name(self) -> str:
        """``<product> <version> <platform>``, the name people pick in menus."""
        return f"{self.product} {self.version} {self.platform}"

    @property
    def version_key(self) -> tuple[tuple[int, int | str], ...]:
        return version_key(self.version)

    @property
    def is_host(self) -> bool:
        return not self.plugin_host_product


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key comparing numbers as numbers: ``5.0.10`` > ``5.0.9``, ``SP12`` > ``SP3``."""
    key: list[tuple[int, int | str]] = []
    for number, word in VERSION_PART.findall(version):
        key.append((1, int(number)) if number else (0, word.lower()))
    return tuple(key)


def _major(version: str) -> str:
    match = re.match(r"\d+", version)
    return match.group(0) if match else version


@dataclass(frozen=True)
class ResolvedPackages:
    """The host package and its plugins chosen for a job."""

    host: Package
    plugins: tuple[Package, ...] = ()

    @property
    def ids(self) -> list[str]:
        """Package ids for ``software_package_ids``, host first."""
        return [self.host.package_id, *(plugin.package_id for plugin in self.plugins)]

    @property
    def all(self) -> tuple[Package, ...]:
        return (self.host, *self.plugins)


class PackageCatalog:
    """Packages of the platforms render nodes run, searchable by name, host and version."""

    def __init__(
        self,
        packages: Iterable[Package | Mapping[str, Any]],
        platforms: Iterable[str] = ("linux",),
    ) -> None:
        wanted = set(platforms)
        self.packages: list[Package] = []
        for record in packages:
            package = record if isinstance(record, Package) else _package_or_none(record)
            if package is not None and package.platform in wanted:
                self.packages.append(package)
        self._by_id = {package.package_id: package for package in self.packages}
        self._by_name: dict[str, Package] = {}
        for package in self.packages:
            self._by_name.setdefault(package.name, package)

    def hosts(self, product: str = "jobs") -> list[Package]:
        """Host packages of ``product``, newest first."""
        found = [p for p in self.packages if p.is_host and p.product == product]
        return sorted(found, key=lambda p: p.version_key, reverse=True)

    def find(self, name: str, field: str = "host_package") -> Package:
        """The package with this exact name, or an error suggesting close names."""
        package = self._by_name.get(name.strip())
        if package is not None:
            return package
        close = difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise PackageError(field, f"unknown package {name!r}{hint}")

    def plugins_for(self, host: Package) -> list[Package]:
        """The plugins Conductor links to ``host`` (its ``plugins`` ids), by product and version."""
        found = [self._by_id[i] for i in host.plugins if i in self._by_id]
        return sorted(found, key=lambda p: (p.product, p.version_key))

    def match_host(self, version: str, product: str = "jobs", platform: str = "linux") -> Package:
        """The host package for a host version.

        The exact version if Conductor has it; otherwise the newest package of the same major
        version that is not newer than the one asked for (a scene saved in 5.0.12 renders in
        5.0.10 rather than in an unknown 5.1); otherwise the oldest newer one of that major.
        """
        hosts = [p for p in self.hosts(product) if p.platform == platform]
        for package in hosts:
            if package.version == version:
                return package
        wanted = version_key(version)
        same_major = [p for p in hosts if _major(p.version) == _major(version)]
        older = [p for p in same_major if p.version_key <= wanted]
        if older:
            return older[0]
        if same_major:
            return same_major[-1]
        available = ", ".join(p.version for p in hosts) or "none"
        raise PackageError(
            "host_version",
            f"no {product} package for version {version!r} on {platform}; available: {available}",
        )

    def resolve(
        self,
        host_package: str | None,
        host_version: str | None,
        plugin_packages: Sequence[str],
        product: str = "jobs",
    ) -> ResolvedPackages:
        """The host (named, or matched from the version) and the named plugins under it."""
        if host_package:
            host = self.find(host_package, field="host_package")
            if not host.is_host:
                raise PackageError("host_package", f"{host_package!r} is a plugin, not a host")
        elif host_version:
            host = self.match_host(host_version, product=product)
        else:
            raise PackageError(
                "host_package", "no host package or host version: press Refresh to detect it"
            )
        plugins = []
        linked = {p.name: p for p in reversed(self.plugins_for(host))}
        for index, name in enumerate(plugin_packages):
            where = f"plugin_packages[{index}]"
            plugin = linked.get(name.strip())
            if plugin is None:
                self.find(name, field=where)  # unknown anywhere: suggest close names
                raise PackageError(where, f"{name!r} is not a plugin of {host.name!r}")
            plugins.append(plugin)
        return ResolvedPackages(host=host, plugins=tuple(plugins))


def _package_or_none(record: Mapping[str, Any]) -> Package | None:
    """A record as a Package; records with an unknown platform are skipped, not fatal."""
    if record.get("platform") not in PLATFORMS:
        return None
    try:
        return Package.model_validate(dict(record))
    except ValidationError:
        return None


class EnvironmentMerge:
    """Merge environment entries from several sources under Conductor's merge policies."""

    def __init__(self, platform: str = "linux") -> None:
        self.platform = platform
        self._lists: dict[str, list[str]] = {}
        self._scalars: dict[str, str] = {}
        self._sources: dict[str, tuple[str, str]] = {}

    def extend(self, entries: Iterable[Any], source: str) -> None:
        """Add entries (EnvEntry, mappings, or objects with name/value/merge_policy)."""
        for entry in entries:
            if isinstance(entry, Mapping):
                name, value = str(entry["name"]), str(entry["value"])
                policy = str(entry.get("merge_policy", "exclusive"))
            else:
                name, value = entry.name, entry.value
                policy = getattr(entry, "merge_policy", "exclusive")
            self._add(name, value, policy, source)

    def _add(self, name: str, value: str, policy: str, source: str) -> None:
        if policy not in ("append", "prepend", "exclusive"):
            raise PackageError(
                source, f"{name} has merge policy {policy!r}; use append, prepend or exclusive"
            )
        earlier = self._sources.get(name)
        if earlier is not None:
            earlier_policy, earlier_source = earlier
            if (earlier_policy == "exclusive") != (policy == "exclusive"):
                raise PackageError(
                    source,
                    f"{name} is {policy} in {source!r} but {earlier_policy} in"
                    f" {earlier_source!r}; make them agree",
                )
        self._sources[name] = (policy, source)
        if policy == "exclusive":
            self._scalars[name] = value
        elif policy == "append":
            self._lists.setdefault(name, []).append(value)
        else:
            self._lists.setdefault(name, []).insert(0, value)

    def as_dict(self) -> dict[str, str]:
        """The flat map Conductor wants; lists joined with ``:`` (linux) or ``;`` (windows)."""
        separator = SEPARATORS.get(self.platform, ":")
        merged = {name: separator.join(values) for name, values in self._lists.items()}
        merged.update(self._scalars)
        return dict(sorted(merged.items()))


def merge_environment(
    resolved: ResolvedPackages,
    account_env: Sequence[Any],
    job_env: Sequence[Any],
) -> dict[str, str]:
    """Packages (host, then plugins), then the account's extra environment, then the job's."""
    merge = EnvironmentMerge(resolved.host.platform)
    for package in resolved.all:
        merge.extend(package.environment, source=package.name)
    merge.extend(account_env, source="account extra environment")
    for index, entry in enumerate(job_env):
        merge.extend([entry], source=f"environment[{index}]")
    return merge.as_dict()
