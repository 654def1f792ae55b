"""Software packages: the catalogue, host-version matching and plugins.

Conductor lists packages as flat records; a host (DCC) package has an empty
``plugin_host_product`` and lists its plugins' ids in ``plugins`` (the server does the linking).
The reference client gets several things wrong that this module fixes:

* names (``product version platform``) are not unique, yet it looks them up first-match; here a
  plugin name is looked up among the chosen host's own plugins, and duplicate host names are
  settled by which of them carries the plugins asked for;
* versions sort as text (``5.0.10`` before ``5.0.9``); here numbers compare as numbers;
* host versions match only as exact strings; here a missing version falls back to the nearest
  one of the same major release (rule in :meth:`PackageCatalog.match_host`);
* a record with an unknown platform raises ``KeyError``; here it is skipped and noted.

Every failure is a one-line :class:`PackageError` naming the job field to fix. Merging the
packages' environments is ``environment.py``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_conductor.conductor_cloud.errors import PackageError
from prefect_conductor.conductor_cloud.job.environment import EnvEntry

Platform = Literal["linux", "windows"]
PLATFORMS: tuple[str, ...] = ("linux", "windows")
VERSION_PART = re.compile(r"(\d+)|([A-Za-z]+)")

VersionKey = tuple[tuple[int, int | str], ...]


class Package(BaseModel):
    """A software package record as ``api/v1/ee/packages`` returns it (unknown keys ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    package_id: str
    product: str
    major_version: str = ""
    minor_version: str = ""
    release_version: str = ""
    build_version: str = ""
    platform: Platform
    plugin_host_product: str = ""
    plugin_host_version: str = ""
    plugins: list[str] = Field(default_factory=list)
    environment: list[EnvEntry] = Field(default_factory=list)
    vendor: str = ""
    package: str = ""
    description: str = ""

    @field_validator(
        "product",
        "major_version",
        "minor_version",
        "release_version",
        "build_version",
        "plugin_host_product",
        "plugin_host_version",
        "vendor",
        "package",
        "description",
        mode="before",
    )
    @classmethod
    def _text(cls, value: Any) -> Any:
        """The server sends empty version parts as "" and sometimes as null or numbers."""
        if value is None:
            return ""
        return value.strip() if isinstance(value, str) else value

    @field_validator("plugins", "environment", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @property
    def version(self) -> str:
        """The non-empty version parts joined by dots: ``5.0.10``, ``4.0.SP12``."""
        parts = (self.major_version, self.minor_version, self.release_version, self.build_version)
        return ".".join(part for part in parts if part)

    @property
    def name(self) -> str:
        """``<product> <version> <platform>``, the name people pick in menus (not unique)."""
        return " ".join(part for part in (self.product, self.version, self.platform) if part)

    @property
    def version_key(self) -> VersionKey:
        return version_key(self.version)

    @property
    def is_host(self) -> bool:
        """Hosts (DCCs) have no host product of their own; plugins name theirs."""
        return not self.plugin_host_product


def version_key(version: str) -> VersionKey:
    """A sort key comparing numbers as numbers: ``5.0.10`` > ``5.0.9``, ``SP12`` > ``SP3``.

    The version is split into runs of digits and runs of letters; separators do not matter, so
    ``5.0 SP12`` and ``5.0.SP12`` are equal. At the same position a word sorts before a number
    (``5.0.SP2`` < ``5.0.9``), and words compare case-insensitively. Each part is tagged so an
    int is never compared with a str.
    """
    return tuple(
        (1, int(number)) if number else (0, word.lower())
        for number, word in VERSION_PART.findall(version)
    )


def _canonical(key: VersionKey) -> VersionKey:
    """The key without trailing zero parts, so ``5.0.10.0`` matches ``5.0.10``."""
    parts = list(key)
    while parts and parts[-1] == (1, 0):
        parts.pop()
    return tuple(parts)


def _major(key: VersionKey) -> int | None:
    """The leading number of a version (its major release), or None when it does not start so."""
    if key and isinstance(key[0][1], int):
        return key[0][1]
    return None


def _clean(name: str) -> str:
    return " ".join(name.split())


def _with_platform(name: str, platform: str) -> str:
    """A name with the platform suffix added when it has none (``redshift-jobs 3.0.62``)."""
    cleaned = _clean(name)
    words = cleaned.split(" ")
    return cleaned if words[-1] in PLATFORMS else f"{cleaned} {platform}"


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


@dataclass(frozen=True)
class ResolvedPackages:
    """The host package and its plugins chosen for a job.

    ``notes`` says, one ``field: text`` line each, where the choice is not literally what was
    asked for (a host version without an exact package, a host package of another version than
    the host version), so validation can show it as a warning.
    """

    host: Package
    plugins: tuple[Package, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ids(self) -> list[str]:
        """Package ids for ``software_package_ids``, host first."""
        return [self.host.package_id, *(plugin.package_id for plugin in self.plugins)]

    @property
    def all(self) -> tuple[Package, ...]:
        """Host then plugins, the order their environments are merged in."""
        return (self.host, *self.plugins)


class PackageCatalog:
    """Packages of the platforms render nodes run, searchable by name, host and version.

    Records that cannot be used (unknown platform, missing fields, repeated id) are skipped and
    described in ``skipped``, one line each, instead of failing the whole catalogue.
    """

    def __init__(
        self,
        packages: Iterable[Package | Mapping[str, Any]],
        platforms: Iterable[str] = ("linux",),
    ) -> None:
        self.platforms = frozenset(platforms)
        self.packages: list[Package] = []
        self.skipped: list[str] = []
        self._by_id: dict[str, Package] = {}
        self._by_name: dict[str, list[Package]] = {}
        for index, record in enumerate(packages):
            package = self._parse(index, record)
            if package is None or package.platform not in self.platforms:
                continue
            if package.package_id in self._by_id:
                self.skipped.append(
                    f"packages[{index}]: id {package.package_id} repeats; kept the first"
                )
                continue
            self.packages.append(package)
            self._by_id[package.package_id] = package
            self._by_name.setdefault(package.name, []).append(package)

    def _parse(self, index: int, record: Package | Mapping[str, Any]) -> Package | None:
        if isinstance(record, Package):
            return record
        where = f"packages[{index}]"
        if not isinstance(record, Mapping):
            self.skipped.append(f"{where}: not a record")
            return None
        platform = record.get("platform")
        if platform not in PLATFORMS:
            self.skipped.append(f"{where} ({record.get('product')}): unknown platform {platform!r}")
            return None
        try:
            return Package.model_validate(dict(record))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            self.skipped.append(f"{where} ({record.get('product')}): {field}: {message}")
            return None

    def by_id(self, package_id: str) -> Package | None:
        return self._by_id.get(package_id)

    def find_all(self, name: str) -> list[Package]:
        """Every package with this exact name (names repeat), in catalogue order."""
        return list(self._by_name.get(_clean(name), []))

    def hosts(self, product: str = "jobs", platform: str | None = None) -> list[Package]:
        """Host packages of ``product`` (optionally of one platform), newest first."""
        found = [
            p
            for p in self.packages
            if p.is_host and p.product == product and platform in (None, p.platform)
        ]
        return sorted(found, key=lambda p: p.version_key, reverse=True)

    def find(self, name: str, field: str = "host_package", platform: str | None = None) -> Package:
        """The package with this exact name, or a PackageError for ``field`` with close names.

        With ``platform`` a name without a platform suffix gets it added. When a name repeats,
        hosts come before plugins, then catalogue order.
        """
        found = self.find_all(name)
        if not found and platform:
            found = self.find_all(_with_platform(name, platform))
        if found:
            return sorted(found, key=lambda p: not p.is_host)[0]
        raise PackageError(field, f"unknown package {_clean(name)!r}{self._hint(name)}")

    def _hint(self, name: str, choices: Iterable[str] | None = None) -> str:
        """``; did you mean ...?`` or ``; known <product> packages: ...`` for an unknown name.

        Within a known product, plain text similarity mostly measures the shared product and
        platform words, so only a near-identical name (a typo) is suggested; otherwise the
        product's packages are listed, the asked platform's first, newest first. An unknown
        product gets close names.
        """
        wanted = _clean(name)
        pool = list(dict.fromkeys(choices if choices is not None else self._by_name))
        product = wanted.split(" ")[0]
        platform = wanted.split(" ")[-1]
        same = sorted(
            (n for n in pool if n.split(" ")[0] == product),
            key=lambda n: (n.split(" ")[-1] == platform, version_key(n)),
            reverse=True,
        )
        close = difflib.get_close_matches(wanted, same or pool, n=3, cutoff=0.9 if same else 0.6)
        if close:
            return f"; did you mean {_quoted(close)}?"
        if same:
            more = ", ..." if len(same) > 6 else ""
            return f"; known {product} packages: {_quoted(same[:6])}{more}"
        return ""

    def plugins_for(self, host: Package) -> list[Package]:
        """The plugins Conductor links to ``host`` (its ``plugins`` ids), by product, newest first.

        The server's links are authoritative: a plugin whose ``plugin_host_version`` looks right
        but which the server did not link is not offered.
        """
        found = [self._by_id[i] for i in dict.fromkeys(host.plugins) if i in self._by_id]
        newest = sorted(found, key=lambda p: p.version_key, reverse=True)
        return sorted(newest, key=lambda p: p.product)

    def match_host(self, version: str, product: str = "jobs", platform: str = "linux") -> Package:
        """The host package for a host version, by this rule:

        1. the package of exactly that version (``5.0.10.0`` equals ``5.0.10``);
        2. else, within the same major release, the oldest package newer than the version: a newer
           build reads scenes saved by an older one, while an older build may not understand what
           a newer one wrote;
        3. else the newest package of that major release that is older than the version;
        4. else a PackageError for ``host_version`` listing the versions that exist.

        A different major release is never chosen: it may render differently.
        """
        return self._match_host_candidates(version, product, platform)[0]

    def _match_host_candidates(
        self, version: str, product: str, platform: str
    ) -> tuple[Package, ...]:
        """Every host package of the matched version (duplicates possible), first is preferred."""
        hosts = self.hosts(product, platform)
        wanted = _canonical(version_key(version))
        if not wanted:
            raise PackageError(
                "host_version", f"{version!r} is not a version; press Refresh to detect it"
            )
        exact = tuple(p for p in hosts if _canonical(p.version_key) == wanted)
        if exact:
            return exact
        major = _major(wanted)
        same_major = [p for p in hosts if major is not None and _major(p.version_key) == major]
        newer = [p for p in same_major if p.version_key > wanted]
        older = [p for p in same_major if p.version_key < wanted]
        if newer:
            nearest = newer[-1].version_key
            return tuple(p for p in newer if p.version_key == nearest)
        if older:
            nearest = older[0].version_key
            return tuple(p for p in older if p.version_key == nearest)
        available = ", ".join(dict.fromkeys(p.version for p in hosts)) or "none"
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
        platform: str = "linux",
    ) -> ResolvedPackages:
        """The host (named, or matched from the version) and the named plugins under it.

        ``host_package`` wins over ``host_version``. Plugin names are looked up among the host's
        own plugins, so a name that several packages share picks the one linked to this host.
        When the host name itself repeats, the first duplicate that carries every plugin asked
        for is chosen.
        """
        notes: list[str] = []
        candidates: Sequence[Package]
        if host_package:
            candidates = self._named_hosts(host_package, product, platform)
            if host_version:
                chosen = candidates[0].version_key
                if _canonical(chosen) != _canonical(version_key(host_version)):
                    notes.append(
                        f"host_package: {candidates[0].name!r} differs from host version"
                        f" {host_version}"
                    )
        elif host_version:
            candidates = self._match_host_candidates(host_version, product, platform)
            if _canonical(candidates[0].version_key) != _canonical(version_key(host_version)):
                notes.append(
                    f"host_version: no {product} {host_version} package on {platform};"
                    f" using {candidates[0].name!r}"
                )
        else:
            raise PackageError(
                "host_package", "no host package or host version: press Refresh to detect it"
            )
        first_error: PackageError | None = None
        for host in candidates:
            try:
                plugins = self._plugins_under(host, plugin_packages)
            except PackageError as error:
                first_error = first_error or error
                continue
            return ResolvedPackages(host=host, plugins=plugins, notes=tuple(notes))
        assert first_error is not None
        raise first_error

    def _named_hosts(self, name: str, product: str, platform: str) -> list[Package]:
        found = self.find_all(name) or self.find_all(_with_platform(name, platform))
        hosts = [p for p in found if p.is_host]
        if not found:
            host_names = [p.name for p in self.packages if p.is_host]
            raise PackageError(
                "host_package", f"unknown package {_clean(name)!r}{self._hint(name, host_names)}"
            )
        if not hosts:
            raise PackageError(
                "host_package",
                f"{found[0].name!r} is a plugin of {found[0].plugin_host_product}, not a host;"
                " list it in plugin_packages",
            )
        ours = [p for p in hosts if p.product == product]
        if not ours:
            raise PackageError(
                "host_package", f"{hosts[0].name!r} is a {hosts[0].product} package, not {product}"
            )
        return ours

    def _plugins_under(self, host: Package, names: Sequence[str]) -> tuple[Package, ...]:
        linked = self.plugins_for(host)
        chosen: list[Package] = []
        for index, name in enumerate(names):
            where = f"plugin_packages[{index}]"
            full = _with_platform(name, host.platform)
            plugin = next((p for p in linked if p.name == full), None)
            if plugin is None:
                raise PackageError(where, self._not_linked(name, full, host, linked))
            for earlier_index, earlier in enumerate(chosen):
                if earlier.product == plugin.product:
                    raise PackageError(
                        where,
                        f"{plugin.name!r} is a second {plugin.product} package"
                        f" (plugin_packages[{earlier_index}] is {earlier.name!r}); keep one",
                    )
            chosen.append(plugin)
        return tuple(chosen)

    def _not_linked(self, name: str, full: str, host: Package, linked: list[Package]) -> str:
        """Why a plugin name is not among the host's plugins, naming both."""
        elsewhere = self.find_all(full) or self.find_all(name)
        if not elsewhere:
            choices = [p.name for p in linked] or None
            return f"unknown package {_clean(name)!r}{self._hint(full, choices)}"
        if all(p.is_host for p in elsewhere):
            return f"{elsewhere[0].name!r} is a host package, not a plugin"
        ids = {p.package_id for p in elsewhere}
        owners = [p.name for p in self.packages if p.is_host and ids & set(p.plugins)]
        reason = f"{elsewhere[0].name!r} is not a plugin of {host.name!r}"
        if owners:
            return f"{reason}; it runs under {_quoted(dict.fromkeys(owners))}"
        return reason
