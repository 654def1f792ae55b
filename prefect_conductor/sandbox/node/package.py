"""The render package the stand-in renderer reads: the stand-in host's project file format.

A project file is JSON: ``format``, and ``items``, each with ``context`` and ``name`` (the full
name is ``<context>/<name>``), ``class`` and ``attributes`` (each ``{"values": [...],
"expression": ...}``). The host's exporter writes the package with every path absolute on the
node, so an image's Save As and frame range are there as a real project holds them.
``write_package`` writes one from a scene export, for a sample scene no host exported (the demo).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.job.paths import node_path
from prefect_conductor.conductor_cloud.job.scene import SceneExport

PROJECT_FORMAT = "ix-standin-project/1"
IMAGE_CLASSES = ("Image", "Layer")


def _attribute(*values: Any) -> dict[str, Any]:
    return {
        "values": list(values),
        "expression": "",
        "expression_enabled": False,
        "expression_activated": False,
    }


def package_document(scene: SceneExport) -> dict[str, Any]:
    """The project file for ``scene``'s images: Save As on the node, frame range, render flag."""
    items = []
    for image in scene.images:
        context, _, name = image.path.rpartition("/")
        items.append(
            {
                "context": context,
                "name": name,
                "class": "Image",
                "disabled": False,
                "attributes": {
                    "save_as": _attribute(node_path(image.save_as)),
                    "render_to_disk": _attribute(image.render_to_disk),
                    "first_frame": _attribute(image.first_frame),
                    "last_frame": _attribute(image.last_frame),
                    "frame_step": _attribute(image.frame_step),
                },
            }
        )
    return {"format": PROJECT_FORMAT, "items": items, "colour": {}}


def write_package(path: Path, scene: SceneExport) -> None:
    """Write ``scene``'s render package at ``path`` (replacing what is there)."""
    text = json.dumps(package_document(scene), indent=1, sort_keys=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
