"""Turn the dependency entries of a scene (files, folders, patterns) into the exact files to upload.

The reference client globs every frame token as ``*`` (so ``img.####.exr`` also picks up
``img.final.exr``), rejects relative paths, skips symlinked folders silently and hangs on an empty
folder. Here:

* relative entries are made absolute against the project's folder, ``~`` and ``$VARS`` expand;
* an entry that names an existing file or folder is taken literally, even when its name holds
  ``#``, ``@``, ``%`` or brackets; folders are walked recursively, following symlinked folders
  but never into a loop (detected by ``(st_dev, st_ino)`` of the folders above);
* anything else is a pattern. Frame tokens match exactly their padding: each ``#`` or ``@`` is
  one digit (``####`` is 4-padded, ``@`` unpadded), ``%04d``/``%d``, Houdini ``$F``/``$F4``/
  ``${F4}``. ``<UDIM>`` is a 4-digit tile from 1001, ``<UVTILE>`` is ``u<U>_v<V>``, and ``*``,
  ``?``, ``[...]`` are globs. Tokens may sit in folder names too; one frame (or tile) per match;
* every file a pattern matches is uploaded, as the reference submitter does, not only the
  rendered frames' files: a motion-blurred frame 10 reads cache frame 11, a simulation reads its
  previous frames. When the frames being rendered are given, each of them with no file becomes a
  warning naming the file it expected.

Errors are :class:`FieldError` naming the field and the entry; nothing here ever waits on input.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prefect_conductor.conductor_cloud.errors import FieldError

if TYPE_CHECKING:
    from prefect_conductor.conductor_cloud.job.frames import FrameList

#: Beyond this many missing frame files of one entry, the rest are summed up in one warning line.
MAX_MISSING_FRAME_WARNINGS = 20

# One alternative per token kind. The Houdini forms take every digit and then refuse a following
# letter, digit or ``_`` so that ``$F4_beauty`` is read as the variable ``F4_beauty``, never as
# ``$F`` followed by ``4_beauty`` (a possessive ``\d*+`` says the same but needs Python 3.11, and
# the host's Python is 3.10: docs/architecture.md).
_TOKEN = re.compile(
    r"""
      (?P<udim><UDIM>)
    | (?P<uvtile><UVTILE>)
    | (?P<printf>%(?P<printf_width>0\d+)?d)
    | (?P<hbrace>\$\{F(?P<hbrace_width>\d*)\})
    | (?P<houdini>\$F(?P<houdini_width>\d*)(?![A-Za-z0-9_]))
    | (?P<hashes>\#+)
    | (?P<ats>@+)
    | (?P<star>\*)
    | (?P<qmark>\?)
    | (?P<cls>\[!?\]?[^\]/]*\])
    """,
    re.VERBOSE,
)
_HOUDINI_FRAME = re.compile(r"\$\{F\d*\}|\$F\d*(?![A-Za-z0-9_])")
_FRAME_TEXT = r"-?\d+"
_UDIM_TEXT = r"\d{4}"
_UVTILE_TEXT = r"u(?P<{u}>\d+)_v(?P<{v}>\d+)"


@dataclass(frozen=True)
class ExpandedFiles:
    """The result of an expansion: absolute, de-duplicated, sorted files, and warning lines."""

    files: tuple[Path, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _Group:
    """A capture group of a compiled component: what it holds and, for frames, its padding."""

    name: str
    kind: str  # "frame" | "udim" | "u" | "v"
    width: int = 0


@dataclass(frozen=True)
class _Component:
    """One path component of a pattern, compiled to an anchored regex over a folder entry name."""

    regex: re.Pattern[str]
    groups: tuple[_Group, ...]
    hides_dotfiles: bool


@dataclass
class _Match:
    """A path that matched the components so far, with the token values it bound."""

    path: str
    values: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _has_token(text: str) -> bool:
    return _TOKEN.search(text) is not None


def _pad(number: int, width: int) -> str:
    """Frame text as the pattern writes it; ``zfill`` keeps the sign first (``-001``)."""
    return str(number).zfill(width)


def _compile_component(text: str, counter: Iterator[int]) -> _Component:
    """Translate one component (``img.####.<UDIM>.exr``) into a regex with typed capture groups."""
    parts: list[str] = []
    groups: list[_Group] = []
    position = 0
    for token in _TOKEN.finditer(text):
        parts.append(re.escape(text[position : token.start()]))
        position = token.end()
        kind = token.lastgroup
        if kind == "udim":
            name = f"g{next(counter)}"
            groups.append(_Group(name, "udim"))
            parts.append(f"(?P<{name}>{_UDIM_TEXT})")
        elif kind == "uvtile":
            u, v = f"g{next(counter)}", f"g{next(counter)}"
            groups += [_Group(u, "u"), _Group(v, "v")]
            parts.append(_UVTILE_TEXT.format(u=u, v=v))
        elif kind == "star":
            parts.append("[^/]*")
        elif kind == "qmark":
            parts.append("[^/]")
        elif kind == "cls":
            body = token.group("cls")[1:-1]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            escaped = "".join(c if c == "-" else re.escape(c) for c in body)
            parts.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            width = _frame_width(token)
            name = f"g{next(counter)}"
            groups.append(_Group(name, "frame", width))
            parts.append(f"(?P<{name}>{_FRAME_TEXT})")
    parts.append(re.escape(text[position:]))
    first = _TOKEN.match(text)
    hides_dotfiles = first is not None and first.lastgroup in ("star", "qmark", "cls")
    return _Component(re.compile("".join(parts)), tuple(groups), hides_dotfiles)


def _frame_width(token: re.Match[str]) -> int:
    """Padding width of a frame token; 1 means unpadded."""
    kind = token.lastgroup
    if kind == "hashes":
        return len(token.group("hashes"))
    if kind == "ats":
        return len(token.group("ats"))
    digits = token.group(f"{kind}_width")
    return int(digits) if digits else 1


def _bind(
    component: _Component, found: re.Match[str], values: dict[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]] | None:
    """Token values of a matched name merged into ``values``; None when they disagree.

    A frame token only matches its exact padding: ``0012`` is frame 12 for ``####`` but not for
    ``###`` or ``$F``. Every frame token of a path must name the same frame (and likewise for
    tiles), so ``shot_####/img.####.exr`` never pairs folder 0001 with file 0002.
    """
    merged = dict(values)
    for group in component.groups:
        text = found.group(group.name)
        number = int(text)
        if group.kind == "frame" and _pad(number, group.width) != text:
            return None
        if group.kind == "udim" and number < 1001:
            return None
        previous = merged.get(group.kind)
        if previous is not None and previous != (number,):
            return None
        merged[group.kind] = (number,)
    return merged


class _Expander:
    """Holds the state of one ``expand_dependencies`` call: results, warnings, folder listings."""

    def __init__(self, base_dir: Path, frames: Iterable[int] | None, field_name: str) -> None:
        self.base_dir = os.path.abspath(os.fspath(base_dir))
        self.frames = None if frames is None else sorted(set(frames))
        self.field = field_name
        self.files: set[str] = set()
        self.warnings: list[str] = []
        self._listings: dict[str, list[tuple[str, bool, bool]]] = {}

    # ------------------------------------------------------------------ entries

    def add(self, entry: str) -> None:
        """Expand one entry into ``self.files``; raise FieldError when it names nothing."""
        if not entry.strip():
            return
        absolute = self._absolute(entry)
        if os.path.lexists(absolute):
            self._add_existing(entry, absolute)
        elif _has_token(absolute):
            self._add_pattern(entry, absolute)
        else:
            raise FieldError(self.field, f"no files match {entry!r}")

    def _absolute(self, entry: str) -> str:
        """Expand ``~`` and environment variables (never the Houdini frame tokens), then anchor."""
        frames: list[str] = []

        def hide(token: re.Match[str]) -> str:
            frames.append(token.group(0))
            return f"\ue000{len(frames) - 1}\ue001"

        hidden = _HOUDINI_FRAME.sub(hide, entry)
        expanded = os.path.expandvars(os.path.expanduser(hidden))
        restored = re.sub("\ue000(\\d+)\ue001", lambda m: frames[int(m.group(1))], expanded)
        return os.path.abspath(os.path.join(self.base_dir, restored))

    def _add_existing(self, entry: str, path: str) -> None:
        try:
            info = os.stat(path)
        except OSError as error:
            raise FieldError(
                self.field, f"no files match {entry!r} ({_reason(error)}: {path})"
            ) from None
        if stat.S_ISDIR(info.st_mode):
            before = len(self.files)
            self._walk(path, info)
            if len(self.files) == before:
                self.warnings.append(f"{self.field}: folder {path} holds no files")
        elif stat.S_ISREG(info.st_mode):
            self._take_file(path)
        else:
            raise FieldError(self.field, f"{path} is not a regular file or folder")

    def _take_file(self, path: str) -> None:
        if not os.access(path, os.R_OK):
            raise FieldError(self.field, f"cannot read {path}: permission denied")
        self.files.add(path)

    # ------------------------------------------------------------------ folders

    def _walk(self, root: str, root_info: os.stat_result) -> None:
        """Every file below ``root``; symlinked folders are followed unless they loop back."""
        stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
            (root, frozenset({(root_info.st_dev, root_info.st_ino)}))
        ]
        while stack:
            folder, ancestors = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError as error:
                raise FieldError(
                    self.field, f"cannot read folder {folder}: {_reason(error)}"
                ) from None
            for item in entries:
                try:
                    info = item.stat()
                except OSError as error:
                    self.warnings.append(f"{self.field}: skipped {item.path}: {_reason(error)}")
                    continue
                if stat.S_ISDIR(info.st_mode):
                    key = (info.st_dev, info.st_ino)
                    if key in ancestors:
                        self.warnings.append(
                            f"{self.field}: skipped symbolic link loop {item.path}"
                        )
                    else:
                        stack.append((item.path, ancestors | {key}))
                elif stat.S_ISREG(info.st_mode):
                    self._take_file(item.path)
                else:
                    self.warnings.append(f"{self.field}: skipped special file {item.path}")

    def _listing(self, folder: str) -> list[tuple[str, bool, bool]]:
        """``(name, is_dir, is_file)`` of a folder's entries (following links), read once."""
        cached = self._listings.get(folder)
        if cached is None:
            cached = []
            try:
                with os.scandir(folder) as entries:
                    for item in entries:
                        try:
                            cached.append((item.name, item.is_dir(), item.is_file()))
                        except OSError:
                            continue
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError as error:
                raise FieldError(
                    self.field, f"cannot read folder {folder}: {_reason(error)}"
                ) from None
            self._listings[folder] = cached
        return cached

    # ------------------------------------------------------------------ patterns

    def _add_pattern(self, entry: str, absolute: str) -> None:
        names = absolute.split("/")[1:]
        counter = iter(range(1_000_000))
        matches = [_Match("")]
        has_frame = False
        for index, name in enumerate(names):
            last = index == len(names) - 1
            if not _has_token(name):
                matches = [_Match(f"{m.path}/{name}", m.values) for m in matches]
                continue
            component = _compile_component(name, counter)
            matches, used_pattern = self._match_component(matches, name, component, last)
            if used_pattern:
                has_frame = has_frame or any(g.kind == "frame" for g in component.groups)
            if not matches:
                break
        found: list[_Match] = []
        for candidate in matches:
            try:
                info = os.stat(candidate.path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                found.append(candidate)
        if has_frame and self.frames is not None and found:
            self._warn_missing_frames(entry, absolute, found)
        if not found:
            raise FieldError(self.field, f"no files match {entry!r}")
        for candidate in found:
            self._add_existing(entry, candidate.path)

    def _match_component(
        self, matches: list[_Match], text: str, component: _Component, last: bool
    ) -> tuple[list[_Match], bool]:
        """Children of each match that fit ``component``; and whether it acted as a pattern.

        A folder entry named exactly like the component (``proj@v2``, ``take[1]``) is taken
        literally, just as a whole entry naming an existing file is.
        """
        result: list[_Match] = []
        used_pattern = False
        for parent in matches:
            listing = self._listing(parent.path or "/")
            if any(name == text for name, _, _ in listing):
                result.append(_Match(f"{parent.path}/{text}", parent.values))
                continue
            used_pattern = True
            for name, is_dir, is_file in listing:
                if component.hides_dotfiles and name.startswith("."):
                    continue
                if not (is_dir or (last and is_file)):
                    continue
                found = component.regex.fullmatch(name)
                if found is None:
                    continue
                values = _bind(component, found, parent.values)
                if values is not None:
                    result.append(_Match(f"{parent.path}/{name}", values))
        return result, used_pattern

    def _warn_missing_frames(self, entry: str, absolute: str, found: list[_Match]) -> None:
        """Warn once per rendered frame that has no file; every match is uploaded regardless."""
        assert self.frames is not None
        present = {m.values["frame"][0] for m in found if "frame" in m.values}
        missing = [frame for frame in self.frames if frame not in present]
        for frame in missing[:MAX_MISSING_FRAME_WARNINGS]:
            self.warnings.append(
                f"{self.field}: frame {frame} has no file {_with_frame(absolute, frame)}"
            )
        if len(missing) > MAX_MISSING_FRAME_WARNINGS:
            self.warnings.append(
                f"{self.field}: {len(missing) - MAX_MISSING_FRAME_WARNINGS} more frames have no"
                f" file for {entry!r}"
            )


def _with_frame(pattern: str, frame: int) -> str:
    """The pattern with every frame token replaced by ``frame`` at that token's padding."""

    def substitute(token: re.Match[str]) -> str:
        if token.lastgroup in ("udim", "uvtile", "star", "qmark", "cls"):
            return token.group(0)
        return _pad(frame, _frame_width(token))

    return _TOKEN.sub(substitute, pattern)


def _reason(error: OSError) -> str:
    """The OS's own words for an error, lower-cased, without the errno prefix or the path."""
    text = error.strerror or type(error).__name__
    return text[:1].lower() + text[1:]


def expand_dependencies(
    entries: Iterable[str],
    *,
    base_dir: Path,
    frames: FrameList | Iterable[int] | None = None,
    field: str = "dependencies",
) -> ExpandedFiles:
    """Expand files, folders and patterns into absolute, unique, sorted files to upload.

    ``base_dir`` anchors relative entries (the project's folder). ``frames`` (the frames being
    rendered) only adds warnings for rendered frames a frame pattern has no file for; every
    matching file is returned. ``field`` names the job or scene field in
    every error and warning, so a person knows where to look.
    """
    expander = _Expander(base_dir, frames, field)
    for entry in entries:
        expander.add(entry)
    unique_warnings = tuple(dict.fromkeys(expander.warnings))
    return ExpandedFiles(tuple(Path(p) for p in sorted(expander.files)), unique_warnings)


# ---------------------------------------------------------------------- paths on the render node

_DRIVE = re.compile(r"^[A-Za-z]:")
_UNC = re.compile(r"^(\\\\|//)(?=[^\\/])")


def node_path(path: str) -> str:
    """A local path as the Linux render node sees it, following the reference submitter.

    Conductor mounts uploaded files at their local path with the drive letter removed
    (ciocore's ``posix_path(with_drive=False)``): ``C:\\proj\\a.tx`` and ``c:/proj/a.tx`` become
    ``/proj/a.tx``. Backslashes become forward slashes; a UNC path ``\\\\server\\share\\x``
    becomes ``//server/share/x``; POSIX and relative paths keep their text (relative ones with
    forward slashes). Used in the task command and the render package path.
    """
    if not path:
        return path
    forward = path.replace("\\", "/")
    if _UNC.match(path):
        return forward
    drive = _DRIVE.match(path)
    if drive is None:
        return forward
    return forward[drive.end() :] or "/"


def mount_problem(path: str) -> str | None:
    """Why Conductor cannot mount ``path`` on a render node, or None (ciocore's own check).

    Without its drive letter the path must start with ``/`` and hold no ``:``: a render node
    mounts each file at that path, and a colon cannot be part of a mount.
    """
    posix = local_posix_path(path)
    rest = posix[2:] if re.match(r"[A-Za-z]:", posix) else posix
    if ":" in rest:
        return "holds ':' after the drive, which a render node cannot mount"
    if not rest.startswith("/"):
        return "is not an absolute path"
    return None


def local_posix_path(path: str) -> str:
    """A local path in the form ciocore sends in ``output_path`` and upload destinations.

    Forward slashes, the drive letter kept (``C:/renders/shot010``): the downloader writes the
    outputs back to this folder on the artist's machine, so the drive must survive.
    """
    return path.replace("\\", "/")
