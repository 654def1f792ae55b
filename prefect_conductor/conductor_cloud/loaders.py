"""Read job files and scene exports (YAML or JSON) into models, one line per problem.

A bad file never produces a traceback: unreadable, not UTF-8, not YAML/JSON, not a mapping, or
fields that fail the model all become an :class:`InputFileError` whose problems read
``job.yaml: chunk_size: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from prefect_conductor.conductor_cloud.errors import InputFileError
from prefect_conductor.conductor_cloud.job import ConductorJob
from prefect_conductor.conductor_cloud.scene import SceneExport

ModelT = TypeVar("ModelT", bound=BaseModel)
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def field_path(location: tuple[int | str, ...]) -> str:
    """Pydantic's error location as a readable field path: ``environment[1].name``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(file)"


def validation_problems(prefix: str, error: ValidationError) -> list[str]:
    """One line per pydantic error: ``prefix: field: message`` (the input value is not echoed)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        lines.append(f"{prefix}: {field_path(tuple(item['loc']))}: {message}")
    return lines


def read_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping; every failure names the file."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(name, [f"{name}: file not found"]) from None
    except IsADirectoryError:
        raise InputFileError(name, [f"{name}: is a folder, not a file"]) from None
    except OSError as error:
        raise InputFileError(name, [f"{name}: cannot read ({error.strerror})"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(
            name, [f"{name}: not UTF-8 text (bad byte at offset {error.start})"]
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as error:
        raise InputFileError(
            name, [f"{name}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise InputFileError(name, [f"{name}: invalid YAML{where}: {problem}"]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputFileError(name, [f"{name}: must hold a mapping of fields, not {kind}"])
    return data


def load_model(path: Path, model: type[ModelT], data: dict[str, Any] | None = None) -> ModelT:
    """Validate a file's mapping against ``model``; every field problem is one line."""
    mapping = read_mapping(path) if data is None else data
    try:
        return model.model_validate(mapping)
    except ValidationError as error:
        raise InputFileError(str(path), validation_problems(str(path), error)) from None


def load_job(path: Path | str) -> ConductorJob:
    """A ConductorJob from a YAML or JSON job file."""
    return load_model(Path(path), ConductorJob)


def is_absolute_anywhere(path: str) -> bool:
    """Absolute on Linux or on Windows (``C:/...``, ``C:\\...``, ``//server/share``)."""
    return path.startswith(("/", "\\\\")) or WINDOWS_DRIVE.match(path) is not None


def anchor(path: str, folder: Path) -> str:
    """``path`` made absolute against ``folder`` unless it already is (patterns survive)."""
    if not path or is_absolute_anywhere(path):
        return path
    return str(folder / path)


def with_absolute_paths(scene: SceneExport, folder: Path) -> SceneExport:
    """The scene with every relative path anchored at ``folder`` (the export file's folder).

    Exports written by the host are absolute already; hand-written ones (examples, tests) may be
    relative so they work from any checkout.
    """
    images = [
        image.model_copy(update={"save_as": anchor(image.save_as, folder)})
        for image in scene.images
    ]
    return scene.model_copy(
        update={
            "project_path": anchor(scene.project_path, folder),
            "render_package": anchor(scene.render_package, folder),
            "config_file": anchor(scene.config_file, folder),
            "dependencies": [anchor(entry, folder) for entry in scene.dependencies],
            "images": images,
        }
    )


def load_scene(path: Path | str) -> SceneExport:
    """A SceneExport from the JSON the host's exporter wrote (YAML accepted for hand-made ones),
    with relative paths anchored at the export file's folder."""
    file = Path(path)
    return with_absolute_paths(load_model(file, SceneExport), file.resolve().parent)
