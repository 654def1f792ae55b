"""Scenes in the stand-in host, built the way an artist would, for the host plugin's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.job.catalog import save_catalog
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog

OFFLINE_CONDUCTOR = "http://conductor.invalid"
"""A Conductor address nothing answers at: with a fresh catalogue cached for it, Refresh works
offline (the cache is used without signing in)."""


@dataclass
class Shot:
    """A saved shot: its project file, its folder, and the items an artist would touch."""

    root: Path
    project: Path
    beauty: Any
    shadow: Any


def build_shot(app: Any, root: Path, name: str = "shot010") -> Shot:
    """Two images rendering to disk, a UDIM texture and a cache sequence; saved to disk."""
    (root / "tex").mkdir(parents=True, exist_ok=True)
    for tile in (1001, 1002):
        (root / "tex" / f"wood.{tile}.tx").write_bytes(b"wood %d" % tile)
    (root / "cache").mkdir(exist_ok=True)
    for frame in range(1, 13):
        (root / "cache" / f"sim.{frame:04d}.abc").write_bytes(b"sim %d" % frame)
    beauty = app.ui_create("Image", "beauty")
    app.ui_set(beauty, "render_to_disk", True)
    app.ui_set(beauty, "save_as", str(root / "renders" / "beauty.####.exr"))
    app.ui_set(beauty, "last_frame", 10)
    shadow = app.ui_create("Layer3d", "shadow")
    app.ui_set(shadow, "render_to_disk", True)
    app.ui_set(shadow, "save_as", str(root / "renders" / "shadow" / "shadow.####.exr"))
    app.ui_set(shadow, "last_frame", 10)
    texture = app.ui_create("TextureMapFile", "wood")
    app.ui_set(texture, "filename", "$PDIR/tex/wood.<UDIM>.tx")
    cache = app.ui_create("GeometryBundleAlembic", "sim")
    app.ui_set(cache, "filename", str(root / "cache" / "sim.####.abc"))
    project = root / f"{name}.project"
    assert app.save_project(str(project))
    return Shot(root=root, project=project, beauty=beauty, shadow=shadow)


def cache_offline_catalog() -> None:
    """A fresh catalogue file for OFFLINE_CONDUCTOR (set CONDUCTOR_URL to it as well)."""
    catalog = fixture_catalog().model_copy(update={"source_url": OFFLINE_CONDUCTOR})
    save_catalog(catalog)


def attribute(item: Any, name: str) -> Any:
    found = item.get_attribute(name)
    assert found is not None, name
    return found


def menu(item: Any, name: str) -> list[str]:
    found = attribute(item, name)
    return [found.get_preset_label(i) for i in range(found.get_preset_count())]
