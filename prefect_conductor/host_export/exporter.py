"""What a scene needs on the farm: images, dependencies, the render package, the scene export.

Runs inside the host (the batch exporter on a worker, and Preview in the artist's session), and
reads the scene through ``host_api`` only:

* **Images**: every Image and Layer item with its output (``save_as``) and own frame range.
* **Dependencies**: the file attributes of enabled items, recognised by their visual hint
  (``FILENAME_OPEN`` or ``FOLDER``; ``FILENAME_SAVE`` marks outputs, and private attributes such
  as ``filename_sys``, the host's own copy of a file name, are skipped). Project variables such
  as ``$PDIR`` are resolved, relative paths are anchored at the project's folder, and sequences
  stay patterns (``####``, ``$4F``, ``<UDIM>``; an expression's ``$F`` is read back as ``@``)
  for the upload step to expand against the frames actually rendered. The colour-management
  files come too: the whole OCIO folder (LUTs sit beside the config), the CDL library and the
  colour-space mapping file.
* **Render package**: the scene saved under another name, ``<project>.<title>.cio.project``,
  with every file path written as a Linux render node sees it (see ``node_paths``) and the
  ConductorJob items removed (render nodes do not have the plugin). The artist's project file is
  never written: the package is a "save as" into the output folder.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
from collections.abc import Iterable

from prefect_conductor.conductor_cloud.job.scene import HostInfo, ImageExport, SceneExport
from prefect_conductor.host_export import host_api
from prefect_conductor.host_export.attributes import CLASS_NAME, IMAGE_CLASSES
from prefect_conductor.host_export.node_paths import (
    is_windows_path,
    linux_path,
    linux_text,
    resolve_variables,
)

INPUT_HINTS = frozenset({"VISUAL_HINT_FILENAME_OPEN", "VISUAL_HINT_FOLDER"})
OUTPUT_HINTS = frozenset({"VISUAL_HINT_FILENAME_SAVE"})
SKIPPED_ATTRIBUTES = frozenset({"filename_sys"})
PACKAGE_SUFFIX = ".cio.project"
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def host_version() -> str:
    """The running host's version in Conductor's package spelling: ``4.0 SP12`` -> ``4.0.SP12``."""
    return re.sub(r"[\s_]+", ".", host_api.version_name().strip())


def project_variables() -> dict[str, str]:
    """The project variables file names may use, as the host defines them."""
    found = {}
    for name in ("PDIR", "CTEMP"):
        value = host_api.factory_variable(name)
        if value:
            found[name] = value
    return found


def node_variables(variables: dict[str, str]) -> dict[str, str]:
    """Variables as the task command sees them on a Linux node (a Windows CTEMP is dropped)."""
    result = {}
    if "PDIR" in variables:
        result["PDIR"] = linux_path(variables["PDIR"])
    ctemp = variables.get("CTEMP", "")
    if ctemp and not is_windows_path(ctemp):
        result["CTEMP"] = ctemp
    return result


def absolute_entry(value: str, variables: dict[str, str]) -> str:
    """A file attribute's value with variables resolved, anchored at the project's folder."""
    text = resolve_variables(value.strip(), variables)
    if not text or is_windows_path(text) or posixpath.isabs(text):
        return text
    folder = variables.get("PDIR", "")
    if is_windows_path(folder):
        return ntpath.join(folder, text)
    return posixpath.normpath(posixpath.join(folder, text)) if folder else text


def image_exports(variables: dict[str, str]) -> list[ImageExport]:
    """Every Image and Layer item; outputs absolute and as Linux render nodes write them."""
    images: dict[str, ImageExport] = {}
    for class_name in IMAGE_CLASSES:
        for found in host_api.items_of_class(class_name):
            info = host_api.image_info(found)
            output = absolute_entry(info.save_as, variables) if info.save_as else ""
            images.setdefault(
                info.path,
                ImageExport(
                    path=info.path,
                    render_to_disk=info.render_to_disk,
                    save_as=linux_path(output),
                    first_frame=info.first_frame,
                    last_frame=info.last_frame,
                    frame_step=max(1, info.frame_step),
                ),
            )
    return list(images.values())


def input_attributes() -> Iterable[host_api.FileAttribute]:
    """The file attributes of enabled items that the renderer reads."""
    for item in host_api.all_items():
        if host_api.is_disabled(item):
            continue
        for attribute in host_api.string_attributes(item):
            if attribute.private or attribute.name in SKIPPED_ATTRIBUTES:
                continue
            if attribute.hint in INPUT_HINTS:
                yield attribute


def colour_dependencies() -> list[str]:
    """The colour-management files in use; the OCIO config's whole folder."""
    files = host_api.colour_files()
    entries = []
    if files.ocio_config:
        module = ntpath if is_windows_path(files.ocio_config) else posixpath
        entries.append(module.dirname(files.ocio_config) or files.ocio_config)
    entries.extend(path for path in (files.cdl_library, files.colour_space_mapping) if path)
    return entries


def dependencies(variables: dict[str, str]) -> list[str]:
    """Every file, folder and pattern the scene reads, as readable where the export runs."""
    entries = []
    for attribute in input_attributes():
        for value in attribute.values:
            entry = absolute_entry(value, variables)
            if entry:
                entries.append(entry)
    entries.extend(colour_dependencies())
    return list(dict.fromkeys(entries))


def export_scene(project_path: str, render_package: str) -> SceneExport:
    """The open scene as the rest of the pipeline reads it."""
    variables = project_variables()
    return SceneExport(
        host=HostInfo(version=host_version()),
        project_path=project_path,
        render_package=render_package,
        images=image_exports(variables),
        dependencies=dependencies(variables),
        variables=node_variables(variables),
    )


def render_package_name(project_path: str, title: str) -> str:
    """``<project>.<title>.cio.project``; no spaces (the host's renderer mishandles them)."""
    module = ntpath if is_windows_path(project_path) else posixpath
    stem = module.splitext(module.basename(project_path))[0]
    safe_stem = UNSAFE_NAME.sub("_", stem).strip("._") or "project"
    safe_title = UNSAFE_NAME.sub("_", title).strip("._") or "render"
    return f"{safe_stem}.{safe_title}{PACKAGE_SUFFIX}"


def job_titles() -> list[str]:
    """The titles of the ConductorJob items in the open scene."""
    return [host_api.get_string(item, "title") for item in host_api.items_of_class(CLASS_NAME)]


def _linux_value(value: str, variables: dict[str, str]) -> str:
    return linux_path(absolute_entry(value, variables)) if value.strip() else value


def prepare_for_nodes(variables: dict[str, str]) -> None:
    """Rewrite the open scene for Linux render nodes: absolute Linux paths, no ConductorJob.

    Only for a session that is thrown away afterwards (batch mode): the changes are never saved
    to the artist's project, only into the render package.
    """
    for item in host_api.items_of_class(CLASS_NAME):
        host_api.remove_item(item)
    node_vars = {name: linux_path(value) for name, value in variables.items()}
    for item in host_api.all_items():
        for attribute in host_api.string_attributes(item):
            if attribute.hint not in INPUT_HINTS | OUTPUT_HINTS:
                continue
            if attribute.private or attribute.name in SKIPPED_ATTRIBUTES:
                continue
            expression = ""
            if attribute.expression:
                expression = linux_text(
                    resolve_variables(host_api.expression_text(item, attribute.name), node_vars)
                )
            host_api.rewrite_string_attribute(
                item,
                attribute.name,
                [_linux_value(value, variables) for value in attribute.values],
                expression,
            )


def write_render_package(path: str, variables: dict[str, str]) -> None:
    """Save the scene, prepared for the nodes, as the render package at ``path``."""
    prepare_for_nodes(variables)
    host_api.save_project(path)
