"""Check rendered frames on disk against what each image should have written.

Downloading a job is only half of "the frames are there": a task can succeed and still leave a
frame missing (a crashed write, an output the template forgot) or empty. For each image, the
expected files come from its Save As pattern and the frames rendered; what is on disk is read with
fileseq (``findSequenceOnDisk``), which is what fileseq is for. The result is one line per image
that has a problem, in the form a person reads at a glance::

    beauty: missing 4, 7 of 1-10
    shadow: empty 3 of 1-10

Frame tokens in Save As follow the host's and the dependency expander's rules: each ``#`` or
``@`` is one digit (``####`` is 4-padded), ``%04d``/``%d``, and Houdini ``$F4``/``${F4}``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import fileseq

_FRAME_TOKEN = re.compile(
    r"(?P<hashes>#+)|(?P<ats>@+)|%(?P<printf>0\d+)?d"
    r"|\$\{F(?P<hbrace>\d*)\}|\$F(?P<houdini>\d*+)(?![A-Za-z_])"
)


def _token_width(token: re.Match[str]) -> int:
    """How many digits a frame token pads to (1 means unpadded)."""
    if token.group("hashes"):
        return len(token.group("hashes"))
    if token.group("ats"):
        return len(token.group("ats"))
    digits = token.group("printf") or token.group("hbrace") or token.group("houdini") or ""
    return int(digits) if digits else 1


def image_name(item_path: str) -> str:
    """``project://scene/beauty`` -> ``beauty``: the name a person knows the image by."""
    return item_path.rstrip("/").rsplit("/", 1)[-1] or item_path


def frame_ranges(frames: Iterable[int]) -> str:
    """Frames as compact ranges separated by ``, `` (``4, 7`` or ``1-3, 5``)."""
    text = fileseq.FrameSet(sorted(set(frames))).frameRange()
    return ", ".join(text.split(","))


@dataclass(frozen=True)
class ImageCheck:
    """What one image wrote compared with what it should have: frames missing and empty."""

    name: str
    pattern: str
    expected: tuple[int, ...]
    missing: tuple[int, ...]
    empty: tuple[int, ...]

    @property
    def ok(self) -> bool:
        """Every expected frame is on disk and not empty."""
        return not self.missing and not self.empty

    @property
    def problems(self) -> list[str]:
        """One line per kind of problem, naming the image, the frames and the range expected."""
        expected = frame_ranges(self.expected)
        lines = []
        if self.missing:
            lines.append(f"{self.name}: missing {frame_ranges(self.missing)} of {expected}")
        if self.empty:
            lines.append(f"{self.name}: empty {frame_ranges(self.empty)} of {expected}")
        return lines


def _split_pattern(save_as: str) -> tuple[str, str, int, str] | None:
    """``dir/beauty.####.exr`` -> (``dir/``, ``beauty.``, 4, ``.exr``), or None when the frame
    token is not in the file name (or there is none)."""
    folder, _, name = save_as.replace("\\", "/").rpartition("/")
    tokens = list(_FRAME_TOKEN.finditer(name))
    if len(tokens) != 1 or _FRAME_TOKEN.search(folder):
        return None
    token = tokens[0]
    prefix = f"{folder}/" if folder else ""
    return prefix, name[: token.start()], _token_width(token), name[token.end() :]


def _frame_file(save_as: str, frame: int) -> str:
    """The file one frame writes: every frame token replaced at its own padding."""

    def substitute(token: re.Match[str]) -> str:
        return str(frame).zfill(_token_width(token))  # the sign counts: -001 for ####

    return _FRAME_TOKEN.sub(substitute, save_as.replace("\\", "/"))


def frame_file(save_as: str, frame: int) -> str:
    """The file one frame of ``save_as`` writes (every frame token at its own padding)."""
    return _frame_file(save_as, frame)


def _on_disk(save_as: str, frames: tuple[int, ...]) -> set[int]:
    """The expected frames that have a file, read with fileseq where the pattern allows."""
    parts = _split_pattern(save_as)
    if parts is None:
        return {frame for frame in frames if os.path.isfile(_frame_file(save_as, frame))}
    folder, base, width, extension = parts
    pattern = f"{folder}{base}{'#' * width}{extension}"
    try:
        found = fileseq.findSequenceOnDisk(
            pattern, strictPadding=True, pad_style=fileseq.PAD_STYLE_HASH1
        )
    except fileseq.FileSeqException:
        return set()
    frame_set = found.frameSet()
    present = {int(frame) for frame in frame_set} if frame_set is not None else set()
    return present.intersection(frames)


def check_image(name: str, save_as: str, frames: Iterable[int]) -> ImageCheck:
    """Compare one image's expected frames (its Save As, absolute) with the files on disk."""
    expected = tuple(sorted(set(frames)))
    present = _on_disk(save_as, expected)
    missing = tuple(frame for frame in expected if frame not in present)
    empty = tuple(
        frame
        for frame in expected
        if frame in present and os.path.getsize(_frame_file(save_as, frame)) == 0
    )
    return ImageCheck(name=name, pattern=save_as, expected=expected, missing=missing, empty=empty)


def relocate(save_as: str, output_path: str, root: Path) -> str:
    """Where an image's Save As lands when the job's ``output_path`` is downloaded to ``root``.

    ``output_path`` is the images' common folder (see ``validation.output_folder``), so a Save As
    keeps its place below it; one outside it is looked for by its file name directly in ``root``.
    """
    posix = posixpath.normpath(save_as.replace("\\", "/"))
    base = posixpath.normpath(output_path.replace("\\", "/")) if output_path else ""
    if base and base != "." and (posix + "/").startswith(base.rstrip("/") + "/"):
        relative = posixpath.relpath(posix, base)
    else:
        relative = posixpath.basename(posix)
    return str(root / relative)
