"""Which job files a batch means: files named on the command line, or every job file in a folder.

Pipeline automation submits a sequence's shots at once (``prefect-conductor submit shots/``).
A folder means its YAML job files (``*.yaml``, ``*.yml``) and those of its subfolders, in sorted
order, so the same folder always gives the same list (the batch's submission keys number the
files in that order). JSON job files are taken when named, not from a folder: a shot folder also
holds JSON that is not a job (the scene export, a catalogue). Each job's scene export is the
``scene_export.json`` beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import UserError

FOLDER_PATTERNS = ("*.yaml", "*.yml")
SCENE_EXPORT_NAME = "scene_export.json"


def expand_job_files(paths: Iterable[Path]) -> list[Path]:
    """Every job file ``paths`` name (folders expanded), absolute, each once, in the given order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted({p for pattern in FOLDER_PATTERNS for p in path.rglob(pattern)})
            files = [p for p in inside if p.is_file()]
            if not files:
                raise UserError(f"{path}: no job files (*.yaml, *.yml) in this folder")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"{path}: no such job file or folder")
    unique: dict[Path, None] = {}
    for file in found:
        unique.setdefault(file.resolve(), None)
    return list(unique)


def scene_beside(job_file: Path) -> Path:
    """The scene export beside ``job_file``; UserError naming the file when there is none."""
    beside = job_file.parent / SCENE_EXPORT_NAME
    if not beside.is_file():
        raise UserError(f"{job_file}: no scene export at {beside}")
    return beside.resolve()
