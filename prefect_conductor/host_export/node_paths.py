"""Paths as Linux render nodes see them, and project variables resolved in file names.

Conductor's render nodes are Linux. A scene saved on Windows names its files ``C:\\proj\\tex.tx``
or ``C:/proj/tex.tx``; on the node the same files sit at ``/proj/tex.tx`` (the drive letter is
dropped, separators are forward slashes), which is also what Conductor's own Windows submitters
write into their render packages. A UNC path ``\\\\server\\share\\x`` becomes ``//server/share/x``.
Paths that are already POSIX are returned unchanged.

File attributes may also name project variables (``$PDIR/tex/wood.<UDIM>.tx``); those are
resolved here with the host's values, while frame tokens (``$F``, ``$4F``, ``####``, ``@``) and
``<UDIM>`` are left alone, so a sequence stays a pattern for the upload step to expand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DRIVE = re.compile(r"^(?P<drive>[A-Za-z]):(?P<rest>[\\/].*|)$")
UNC = re.compile(r"^\\\\[^\\/]")
VARIABLE = re.compile(r"\$\{(?P<braced>\w+)\}|\$(?P<bare>[A-Za-z_]\w*)")
FRAME_VARIABLE = re.compile(r"^\d*F$")


def is_windows_path(path: str) -> bool:
    """``C:\\x``, ``C:/x`` or ``\\\\server\\share``."""
    return bool(DRIVE.match(path) or UNC.match(path))


def linux_path(path: str) -> str:
    """A path as a Linux render node sees it; POSIX paths come back unchanged."""
    if UNC.match(path):
        return path.replace("\\", "/")
    match = DRIVE.match(path)
    if match is None:
        return path
    rest = match.group("rest").replace("\\", "/")
    return rest or "/"


def linux_text(text: str) -> str:
    """``text`` with every Windows absolute path in it rewritten for Linux nodes."""
    words = re.split(r"(\s+)", text)
    converted = []
    for word in words:
        bare = word.strip("\"'")
        if bare and is_windows_path(bare):
            word = word.replace(bare, linux_path(bare))
        converted.append(word)
    return "".join(converted)


def resolve_variables(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``$NAME`` and ``${NAME}`` by known project variables; leave frame tokens be."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if FRAME_VARIABLE.match(name) or name not in variables:
            return match.group(0)
        return variables[name]

    return VARIABLE.sub(replace, text)
