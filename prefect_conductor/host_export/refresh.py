"""The Refresh button: sign in if needed, fill the menus from the catalogue, detect the host.

Each menu is rebuilt on this item only. The artist's earlier choice is kept whenever it is still
in the catalogue (found by its remembered label, since the stored index can point elsewhere after
a reload); otherwise Project falls back to ``- not set -``, Instance Type to the first machine, and
Host Package to the package matching the running host's version.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.catalog import Catalog, InstanceType
from prefect_conductor.host_export import catalog_source, exporter, host_api
from prefect_conductor.host_export.attributes import FIRST_ENTRY, FRAMES_INFO, MENUS
from prefect_conductor.host_export.item import frames_info, menu_value

PLATFORM = "linux"
"""Render nodes run Linux: only Linux machines and packages are offered."""


def instance_label(instance: InstanceType) -> str:
    """``n1-standard-8 (8 cores, 30 GB)``: the name first, so it can be read back."""
    return f"{instance.name} ({instance.label})"


def _index_of(labels: Sequence[str], wanted: str | None) -> int | None:
    if wanted is None:
        return None
    return labels.index(wanted) if wanted in labels else None


def _set_menu(obj: host_api.Item, name: str, labels: list[str], chosen: int) -> None:
    host_api.set_menu(obj, name, labels, chosen)
    host_api.set_string(obj, MENUS[name], "" if chosen == 0 else labels[chosen])


def _lost(obj: host_api.Item, name: str, earlier: str) -> None:
    host_api.log_warning(
        f"ConductorJob {host_api.full_name(obj)}: Refresh: {name.replace('_', ' ')} {earlier!r}"
        " is no longer offered by Conductor; choose another"
    )


def fill_projects(obj: host_api.Item, catalog: Catalog) -> None:
    labels = [FIRST_ENTRY["project"], *catalog.projects]
    earlier = menu_value(obj, "project")
    chosen = _index_of(labels, earlier)
    if earlier and chosen is None:
        _lost(obj, "project", earlier)
    _set_menu(obj, "project", labels, chosen or 0)


def fill_instance_types(obj: host_api.Item, catalog: Catalog) -> None:
    machines = [t for t in catalog.instance_types if t.operating_system == PLATFORM]
    labels = [FIRST_ENTRY["instance_type"], *(instance_label(t) for t in machines)]
    earlier = menu_value(obj, "instance_type")
    names = [None, *(t.name for t in machines)]
    chosen = names.index(earlier) if earlier in names else None
    if earlier and chosen is None:
        _lost(obj, "instance_type", earlier)
    _set_menu(obj, "instance_type", labels, chosen or (1 if machines else 0))


def fill_host_packages(obj: host_api.Item, catalog: Catalog, version: str) -> str | None:
    """Fill Host Package; return the package the host version resolves to (None: none does)."""
    packages = catalog.package_catalog()
    hosts = [p for p in packages.hosts() if p.platform == PLATFORM]
    labels = [FIRST_ENTRY["host_package"], *(p.name for p in hosts)]
    earlier = menu_value(obj, "host_package")
    chosen = _index_of(labels, earlier)
    if earlier and chosen is None:
        _lost(obj, "host_package", earlier)
    matched: str | None
    try:
        matched = packages.match_host(version, platform=PLATFORM).name
    except UserError:
        matched = None
    if chosen is None:
        chosen = _index_of(labels, matched) or 0
    _set_menu(obj, "host_package", labels, chosen)
    return matched


def refresh(obj: host_api.Item) -> Catalog:
    """Fill the menus, detect the host version, update Frames Info; log one summary line."""
    catalog, fetched = catalog_source.catalog_for_refresh()
    version = exporter.host_version()
    host_api.set_string(obj, "host_version", version)
    fill_projects(obj, catalog)
    fill_instance_types(obj, catalog)
    matched = fill_host_packages(obj, catalog, version)
    host_api.set_string(obj, FRAMES_INFO, frames_info(obj))
    who = f"ConductorJob {host_api.full_name(obj)}"
    source = "fetched from" if fetched else "cached from"
    host_api.log_info(
        f"{who}: Refresh: {len(catalog.projects)} projects, {len(catalog.instance_types)}"
        f" instance types, {len(catalog.packages)} packages ({source} {catalog.source_url});"
        f" Jobs {version} -> {matched or 'no matching package'}"
    )
    if matched is None and menu_value(obj, "host_package") is None:
        host_api.log_warning(
            f"{who}: Refresh: Conductor has no Jobs package for version {version}: choose one"
            " in Host Package"
        )
    return catalog
