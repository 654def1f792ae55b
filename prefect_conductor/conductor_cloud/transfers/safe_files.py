"""Writing below a folder without following a link that someone else planted there.

The root (the ``--output`` a person gave, or the job's output folder) is trusted as given. Below
it, each folder is opened one at a time without following links (``O_NOFOLLOW`` relative to its
parent's descriptor), so a linked subfolder is refused instead of sending files where it points.
A file is written under a fresh name that did not exist (``O_CREAT | O_EXCL``), then renamed over
its final name: a rename replaces a link at that name and never writes through it. Where the
system has no descriptor-relative calls (Windows), each folder is checked with ``lstat`` instead.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from prefect_conductor.conductor_cloud.errors import UserError

NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
BINARY = getattr(os, "O_BINARY", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
RELATIVE_TO_FOLDER = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd


class UnsafeFolder(UserError):
    """A folder below the download root is a link or not a folder: one line naming it."""


def _refused(folder: Path) -> UnsafeFolder:
    return UnsafeFolder(f"download: {folder} is a link or not a folder; refused")


class Folder:
    """A folder reached from a trusted root without following links; a context manager."""

    def __init__(self, root: Path, parts: Sequence[str]) -> None:
        self.path = root.joinpath(*parts)
        self._fd: int | None = None
        root.mkdir(parents=True, exist_ok=True)
        if not RELATIVE_TO_FOLDER:
            self._walk_by_path(root, parts)
            return
        fd = os.open(root, os.O_RDONLY | DIRECTORY)
        try:
            for depth, part in enumerate(parts, 1):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, os.O_RDONLY | DIRECTORY | NO_FOLLOW, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise _refused(root.joinpath(*parts[:depth])) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _walk_by_path(self, root: Path, parts: Sequence[str]) -> None:
        folder = root
        for part in parts:
            folder = folder / part
            folder.mkdir(exist_ok=True)
            info = os.lstat(folder)
            junction = getattr(os.path, "isjunction", lambda _: False)(folder)
            if not stat.S_ISDIR(info.st_mode) or junction:
                raise _refused(folder)

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _at(self, name: str) -> str:
        return name if self._fd is not None else str(self.path / name)

    def file_info(self, name: str) -> os.stat_result | None:
        """The entry ``name`` when it is a regular file (not a link); None otherwise."""
        try:
            info = os.stat(self._at(name), dir_fd=self._fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return info if stat.S_ISREG(info.st_mode) else None

    def md5(self, name: str) -> bytes:
        """The md5 digest of the regular file ``name``, opened without following a link."""
        digest = hashlib.md5(usedforsecurity=False)
        fd = os.open(self._at(name), os.O_RDONLY | BINARY | NO_FOLLOW, dir_fd=self._fd)
        with os.fdopen(fd, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.digest()

    def new_file(self, name: str) -> tuple[str, BinaryIO]:
        """A fresh hidden file beside ``name`` that did not exist before: its name and handle."""
        temporary = f".{name}.{secrets.token_hex(6)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | BINARY | NO_FOLLOW
        fd = os.open(self._at(temporary), flags, 0o644, dir_fd=self._fd)
        return temporary, os.fdopen(fd, "wb")

    def replace(self, temporary: str, name: str) -> None:
        """Move ``temporary`` over ``name``; a link at ``name`` is replaced, never followed."""
        os.replace(self._at(temporary), self._at(name), src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def remove(self, name: str) -> None:
        """Remove ``name`` if it is there."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._at(name), dir_fd=self._fd)
