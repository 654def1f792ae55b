"""A render node's file system for one task: the job's uploads laid out by md5, paths rooted.

Conductor mounts every uploaded file on the node at its path without the drive letter. The
sandbox does the same inside a folder of its own per task (the node's root): each
``upload_files`` entry is copied there from the sandbox's storage by its md5, never by a path a
client sent as a storage name. A destination that climbs out with ``..`` is refused.
The task's command names node paths (``/proj/shot.project``); every absolute path in it is taken
below the root, so the command runs unchanged in meaning, and the stand-in ``cnode`` on ``PATH``
writes the frames below the root too.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from prefect_conductor.conductor_cloud.job.paths import node_path

_WORD_START_SLASH = re.compile(r"(^|[\s'\"=])/")
SAFE_ROOT = re.compile(r"[A-Za-z0-9_./-]+")
"""A root folder that needs no quoting in a shell word, so rooting a bare path keeps it bare."""


class LayoutError(Exception):
    """An upload entry the node cannot mount."""


def node_file(root: Path, destination: str) -> Path:
    """Where ``destination`` lives below ``root``; LayoutError if it would leave it."""
    parts = PurePosixPath(node_path(destination)).parts
    if not parts or parts[0] not in ("/", "//") or ".." in parts:
        raise LayoutError(f"upload_files: {destination[:80]!r} cannot be mounted")
    return root.joinpath(*parts[1:])


def lay_out(
    root: Path, uploads: Sequence[Mapping[str, Any]], blob: Callable[[bytes], Path]
) -> set[Path]:
    """Put every uploaded file of the job at its node path below ``root``; the files put."""
    placed: set[Path] = set()
    for entry in uploads:
        target = node_file(root, str(entry.get("destination") or ""))
        source = blob(base64.b64decode(str(entry.get("md5") or "")))
        target.parent.mkdir(parents=True, exist_ok=True)
        # a copy, never a link: a command that writes to its inputs must not change the store
        shutil.copyfile(source, target)
        placed.add(target)
    return placed


def rooted(command: str, root: str) -> str:
    """``command`` with every absolute path (a word, or a quoted word, starting ``/``) below
    ``root``."""
    return _WORD_START_SLASH.sub(lambda match: f"{match.group(1)}{root}/", command)


def stand_in_bin(folder: Path) -> Path:
    """A folder holding the stand-in ``cnode`` (this Python running ``node.cnode``)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "cnode"
    python = shlex.quote(sys.executable)
    text = f'#!/bin/sh\nexec {python} -m prefect_conductor.sandbox.node.cnode "$@"\n'
    if not script.is_file() or script.read_text() != text:
        partial = folder / ".cnode.partial"
        partial.unlink(missing_ok=True)
        partial.write_text(text)
        partial.chmod(0o755)
        partial.replace(script)
    return folder


def files_below(folder: Path) -> Iterator[tuple[str, Path]]:
    """Every regular file below ``folder`` (links are not followed), by relative posix path."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for base, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not (Path(base) / name).is_symlink()]
        for name in sorted(names):
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(folder).as_posix(), path
