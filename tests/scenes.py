"""Builders for small scenes and jobs on disk, shared by the core tests (no Prefect, no HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.scene import HostInfo, ImageExport, SceneExport
from prefect_conductor.sandbox.node.package import write_package

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "shot010"


def make_scene(root: Path, **changes: Any) -> SceneExport:
    """A two-image scene under ``root`` with a render package and a few dependency files."""
    (root / "renders").mkdir(parents=True, exist_ok=True)
    package = root / "shot.cio.project"
    package.write_text("render package\n")
    (root / "shot.project").write_text("artist project\n")
    (root / "tex").mkdir(exist_ok=True)
    (root / "tex" / "wood.1001.tx").write_bytes(b"wood")
    fields: dict[str, Any] = {
        "host": HostInfo(version="5.0.10"),
        "project_path": str(root / "shot.project"),
        "render_package": str(package),
        "images": [
            ImageExport(
                path="project://scene/beauty",
                render_to_disk=True,
                save_as=str(root / "renders" / "beauty.####.exr"),
                first_frame=1,
                last_frame=10,
            ),
            ImageExport(
                path="project://scene/shadow",
                render_to_disk=True,
                save_as=str(root / "renders" / "shadow" / "shadow.####.exr"),
                first_frame=1,
                last_frame=10,
            ),
        ],
        "dependencies": [str(root / "tex" / "wood.<UDIM>.tx")],
    }
    fields.update(changes)
    scene = SceneExport(**fields)
    if scene.render_package == str(package):  # the host's exporter writes what the node reads
        write_package(package, scene)
    return scene


def make_job(**changes: Any) -> ConductorJob:
    """The quick start: custom frames 1-10, chunk size 2, scout 3,8, a known catalogue."""
    fields: dict[str, Any] = {
        "title": "shot010 lighting",
        "images": ["project://scene/beauty", "project://scene/shadow"],
        "project": "default",
        "use_custom_frames": True,
        "custom_frames": "1-10",
        "chunk_size": 2,
        "use_scout_frames": True,
        "scout_frames": "3,8",
        "instance_type": "n1-standard-8",
        "host_version": "5.0.10",
        "notify": ["lead@example.com"],
    }
    fields.update(changes)
    return ConductorJob(**fields)
