"""Read job files and scene exports (YAML or JSON) into models, one line per problem.

A bad file never produces a traceback: unreadable, not UTF-8, not YAML/JSON, not a mapping, or
fields that fail the model all become an :class:`InputFileError` whose problems read
``job.yaml: chunk_size: Input should be greater than or equal to 1``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from prefect_conductor.conductor_cloud.errors import InputFileError
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.upload_roots import check_uploadable

ModelT = TypeVar("ModelT", bound=BaseModel)
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings a job file, scene export or catalogue may have (the
real ones nest 4 deep; 20,000 levels once ended in a RecursionError)."""


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # ``<<: *defaults`` may be overridden on purpose
            key = self.construct_object(key_node, deep=False)
            if isinstance(key, Hashable) and key in seen:
                raise DuplicateKeyError(str(key), key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class DuplicateKeyError(ValueError):
    """A mapping names the same key twice; ``line`` is 1-based, 0 when unknown (JSON)."""

    def __init__(self, key: str, line: int = 0) -> None:
        self.key = key
        self.line = line
        super().__init__(key)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` object hook: a key given twice is an error, not "the last one wins"."""
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise DuplicateKeyError(key)
        mapping[key] = value
    return mapping


def nesting_depth(data: Any) -> int:
    """How deeply lists and mappings nest in ``data`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_bytes_safely(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; every refusal names the file.

    Opened without blocking and checked on the open descriptor: a FIFO (which would hang the
    reader), a device such as /dev/zero (which never ends) or a folder is refused, and a file
    swapped after a check cannot slip through.
    """
    name = str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputFileError(name, [f"{name}: file not found"]) from None
    except IsADirectoryError:
        raise InputFileError(name, [f"{name}: is a folder, not a file"]) from None
    except OSError as error:
        raise InputFileError(name, [f"{name}: cannot read ({error.strerror})"]) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise InputFileError(name, [f"{name}: is a folder, not a file"])
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(name, [f"{name}: not a regular file (a device, pipe or socket)"])
        if info.st_size > limit:
            raise InputFileError(name, [f"{name}: {info.st_size} bytes, more than {limit}"])
        chunks = []
        remaining = limit + 1
        while remaining > 0 and (chunk := os.read(descriptor, min(remaining, 1 << 20))):
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as error:
        raise InputFileError(name, [f"{name}: cannot read ({error.strerror})"]) from None
    finally:
        os.close(descriptor)
    raw = b"".join(chunks)
    if len(raw) > limit:
        raise InputFileError(name, [f"{name}: more than {limit} bytes"])
    return raw


def read_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping; every failure names the file.

    Only a regular file of at most ``PREFECT_CONDUCTOR_MAX_INPUT_BYTES`` is read; a key given twice,
    nesting deeper than :data:`MAX_DEPTH` and numbers too long to convert are refused.
    """
    name = str(path)
    raw = read_bytes_safely(path, get_settings().max_input_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputFileError(
            name, [f"{name}: not UTF-8 text (bad byte at offset {error.start})"]
        ) from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except DuplicateKeyError as error:
        where = f" (line {error.line})" if error.line else ""
        raise InputFileError(
            name, [f"{name}: key {error.key!r} is given twice{where}; keep one"]
        ) from None
    except json.JSONDecodeError as error:
        raise InputFileError(
            name, [f"{name}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"]
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise InputFileError(name, [f"{name}: invalid YAML{where}: {problem}"]) from None
    except RecursionError:
        raise InputFileError(name, [f"{name}: nested more than {MAX_DEPTH} levels deep"]) from None
    except ValueError as error:
        # int() refuses numbers of more than sys.get_int_max_str_digits() digits; YAML's
        # constructors refuse impossible dates (2020-13-45).
        if "digits" in str(error):
            raise InputFileError(name, [f"{name}: a number is too long to read"]) from None
        raise InputFileError(name, [f"{name}: a value cannot be read ({error})"]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputFileError(name, [f"{name}: must hold a mapping of fields, not {kind}"])
    if nesting_depth(data) > MAX_DEPTH:
        raise InputFileError(name, [f"{name}: nested more than {MAX_DEPTH} levels deep"])
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
    with relative paths anchored at the export file's folder, its render package checked against
    the upload roots (``upload_roots.py``)."""
    file = Path(path)
    folder = file.resolve().parent
    scene = with_absolute_paths(load_model(file, SceneExport), folder)
    # The render package is copied to staging before the upload list is checked, so its source
    # is checked here: never a secret, and from the project, the export's folder or a root.
    if scene.render_package:
        check_uploadable([Path(scene.render_package)], scene.project_path, extra_roots=[folder])
    return scene
