"""Base64 MD5 of files, and a per-user cache so an unchanged file is never hashed twice.

Conductor identifies every uploaded file by the base64 of its 16-byte MD5 digest, so each
submission needs one per dependency; for a few hundred GiB of textures that is minutes of disk
reads. The reference client caches digests in a world-writable SQLite file in the shared temp
folder (anyone can poison it, and it is trusted blindly), keyed on path, size and a
seconds-resolution mtime, opening a connection per statement. This cache instead:

* lives in a per-user folder (``$PREFECT_CONDUCTOR_HOME`` or ``~/.cache/prefect-conductor``),
  folder 0700 and file 0600; a file or folder another user could write is not used at all;
* keys a digest on (path, size, mtime_ns, inode), so a file replaced by a rename is rehashed;
* trusts an entry for ``max_age_days`` only, so a silent same-size, same-mtime edit (rare, but
  tools that restore mtimes exist) is caught eventually;
* uses WAL mode and one connection guarded by a lock: lookups are microseconds beside hashing, and
  several processes (parallel submissions) can share the file;
* is only a cache: a corrupt file is rebuilt, a locked one is skipped, never an error.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from prefect_conductor.conductor_cloud.settings import get_settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_MAX_AGE_DAYS = 30.0
_MD5_BASE64_LENGTH = 24  # base64 of 16 bytes, with "==" padding

_SCHEMA = """
CREATE TABLE IF NOT EXISTS md5 (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    hashed_at REAL NOT NULL
) WITHOUT ROWID
"""


def default_cache_path() -> Path:
    """Where the cache lives unless told otherwise: per user, never a shared temp folder."""
    return get_settings().md5_cache_path


def md5_base64(
    path: Path,
    block_size: int = 1 << 20,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """The base64 MD5 of a file, read in ``block_size`` blocks into one reused buffer.

    ``hashlib`` releases the GIL while digesting large blocks, so several threads hash several
    files in parallel. ``on_bytes`` is told each block's length (progress for big files).
    """
    digest = hashlib.md5(usedforsecurity=False)
    buffer = bytearray(block_size)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            digest.update(view[:count])
            if on_bytes is not None:
                on_bytes(count)
    return base64.b64encode(digest.digest()).decode("ascii")


def _private(path: Path, *, folder: bool) -> bool:
    """Whether only we can write ``path``; a cache file of ours is tightened to 0600.

    A folder we did not create keeps its permissions (it may be someone's home), but one that
    others can write disqualifies the cache: they could swap the file for a poisoned one.
    """
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    mode = stat.S_IMODE(info.st_mode)
    if folder:
        return not mode & 0o022
    if mode & 0o077:
        path.chmod(0o600)
    return True


class Md5Cache:
    """Digests of files keyed on (path, size, mtime_ns, inode); safe to share between threads.

    ``lookup`` and ``store`` never raise for cache trouble: a cache that cannot be used (another
    user's file, a folder others can write, a locked or unwritable database) just misses, with one
    warning in the log, and the upload goes on hashing.
    """

    def __init__(self, path: Path | None = None, *, max_age_days: float = DEFAULT_MAX_AGE_DAYS):
        self.path = Path(path) if path is not None else default_cache_path()
        self.max_age_seconds = max_age_days * 86_400.0
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._disabled = False

    @classmethod
    def disabled(cls) -> Md5Cache:
        """A cache that never hits and stores nothing: every file is hashed every time."""
        cache = cls(Path(os.devnull))
        cache._disabled = True
        return cache

    # ------------------------------------------------------------------ connection

    def _connect(self) -> sqlite3.Connection | None:
        """The shared connection, opened on first use; None when the cache is disabled."""
        if self._connection is not None or self._disabled:
            return self._connection
        try:
            self._connection = self._open()
        except (OSError, sqlite3.Error) as error:
            log.warning("md5 cache %s is not used: %s", self.path, error)
            self._disabled = True
        return self._connection

    def _open(self) -> sqlite3.Connection:
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(folder, folder=True):
            raise PermissionError(f"folder {folder} can be written by other users")
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(descriptor)
        if not _private(self.path, folder=False):
            raise PermissionError(f"{self.path} belongs to another user")
        try:
            return self._prepare(sqlite3.connect(self.path, timeout=5.0, check_same_thread=False))
        except sqlite3.DatabaseError as error:
            log.warning("md5 cache %s was unreadable (%s); starting a new one", self.path, error)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(descriptor)
            return self._prepare(sqlite3.connect(self.path, timeout=5.0, check_same_thread=False))

    @staticmethod
    def _prepare(connection: sqlite3.Connection) -> sqlite3.Connection:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            (version,) = connection.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                connection.execute("DROP TABLE IF EXISTS md5")
            connection.execute(_SCHEMA)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            connection.commit()
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    # ------------------------------------------------------------------ public

    def lookup(self, path: Path, info: os.stat_result) -> str | None:
        """The cached digest of ``path`` if its size, mtime and inode still match ``info``."""
        with self._lock:
            connection = self._connect()
            if connection is None:
                return None
            try:
                row = connection.execute(
                    "SELECT size, mtime_ns, inode, md5, hashed_at FROM md5 WHERE path = ?",
                    (os.fspath(path),),
                ).fetchone()
            except sqlite3.Error as error:
                log.debug("md5 cache lookup failed for %s: %s", path, error)
                return None
        if row is None:
            return None
        size, mtime_ns, inode, md5, hashed_at = row
        if (size, mtime_ns, inode) != (info.st_size, info.st_mtime_ns, info.st_ino):
            return None
        if time.time() - hashed_at > self.max_age_seconds:
            return None
        if not isinstance(md5, str) or len(md5) != _MD5_BASE64_LENGTH:
            return None
        return md5

    def store(self, path: Path, info: os.stat_result, md5: str) -> None:
        """Remember ``md5`` for ``path`` as it was when ``info`` was taken."""
        with self._lock:
            connection = self._connect()
            if connection is None:
                return
            try:
                connection.execute(
                    "INSERT OR REPLACE INTO md5 (path, size, mtime_ns, inode, md5, hashed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        os.fspath(path),
                        info.st_size,
                        info.st_mtime_ns,
                        info.st_ino,
                        md5,
                        time.time(),
                    ),
                )
                connection.commit()
            except sqlite3.Error as error:
                log.debug("md5 cache store failed for %s: %s", path, error)

    def close(self) -> None:
        """Close the connection; the cache reopens it if used again."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> Md5Cache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Md5Cache({os.fspath(self.path)!r})"
