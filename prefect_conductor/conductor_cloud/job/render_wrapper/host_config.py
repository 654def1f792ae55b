"""The host config file every task renders with: the artist's, cleaned for a render node.

The host's renderer crashes on a node when the config carries the interface's blocks (window
layouts, viewers, the command port), and a Windows drive letter points nowhere there. So, as
Conductor's own submitter does, every job uploads a cleaned copy and the command always passes
``-config_file``: the copy drops those blocks (a block is a line ``name {`` up to its matching
line starting with ``}``) and turns ``C:/`` into ``/`` and ``C:\\`` into ``\\``. A scene that names
no config gets an empty one, so the renderer never falls back to whatever the node has.

The copy is staged like the render package, in a folder named by its content's hash, so the same
config always has the same path and md5 and a later edit never changes a submitted job.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import FieldError

CONFIG_NAME = "jobs.cfg"
"""The cleaned copy's file name on the node."""
UI_BLOCKS = (
    "recent_file_categories",
    "viewport_layout",
    "user_interface",
    "animation",
    "layout",
    "command_port",
    "scripting",
    "image_view",
    "image_history",
    "texture_view",
    "_3d_view",
    "nodal_view",
    "playblast",
    "units",
)
"""Top-level blocks that only the interface reads; the renderer crashes on some of them."""
_DROPPED = re.compile(r"(?:" + "|".join(re.escape(name) for name in UI_BLOCKS) + r") \{")
_OPENS = re.compile(r".* \{")
_DRIVE = re.compile(r"[A-Z]:/")
_WINDOWS_DRIVE = re.compile(r"[A-Z]:\\")


def cleaned_config(text: str) -> str:
    """``text`` without the interface's blocks and without drive letters."""
    kept: list[str] = []
    depth = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if depth == 0:
            if _DROPPED.fullmatch(stripped):
                depth = 1
                continue
            line = _DRIVE.sub("/", line)
            line = _WINDOWS_DRIVE.sub(lambda _m: "\\", line)
            kept.append(line)
        elif _OPENS.fullmatch(stripped):
            depth += 1
        elif stripped.startswith("}"):
            depth -= 1
    return "".join(kept)


def stage_config(source: str, staging_root: Path) -> Path:
    """The cleaned copy of ``source`` (empty when ``source`` is ""), staged by content hash."""
    text = ""
    if source:
        try:
            text = Path(source).read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise FieldError("config_file", f"cannot read {source} ({error.strerror})") from None
    cleaned = cleaned_config(text).encode("utf-8")
    folder = staging_root / "config" / hashlib.sha256(cleaned).hexdigest()[:20]
    target = folder / CONFIG_NAME
    if not target.is_file() or target.read_bytes() != cleaned:
        folder.mkdir(parents=True, exist_ok=True)
        # a fresh file of our own (O_EXCL), never one a link points at, then renamed into place
        fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{CONFIG_NAME}.")
        with os.fdopen(fd, "wb") as stream:
            stream.write(cleaned)
        os.replace(partial, target)
    return target
