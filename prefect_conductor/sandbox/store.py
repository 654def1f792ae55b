"""The sandbox's state in one SQLite file, so a restart on the same folder loses nothing.

Jobs keep their whole payload and when they were killed (0: never); tasks keep their frames and
when their clock started (NULL: held by the native scout), how often their node was preempted and
when they were left ``preempted``; ``attempts`` counts each frame's renders (per tile) across all
jobs, so ``fail_attempts`` and ``preempt_attempts`` hold over a restart and a later job; uploads
are indexed by base64 md5;
tokens are kept as their SHA-256 only; the request log lets tests count what a client really sent.
One connection guarded by a lock is plenty for a loopback test peer.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    jid INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    killed REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tasks (
    jid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    frames TEXT NOT NULL,
    command TEXT NOT NULL,
    started_at REAL,
    will_fail INTEGER NOT NULL DEFAULT 0,
    killed REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (jid, tid)
);
CREATE TABLE IF NOT EXISTS uploads (md5 TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    token TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    md5 TEXT NOT NULL,
    size INTEGER NOT NULL,
    upload_id TEXT,
    part_number INTEGER,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS multipart (
    upload_id TEXT PRIMARY KEY,
    md5 TEXT NOT NULL,
    size INTEGER NOT NULL,
    part_size INTEGER NOT NULL,
    parts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT, path TEXT, status INTEGER, storage_bearer INTEGER,
    params TEXT NOT NULL DEFAULT '', terms TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    frame INTEGER NOT NULL,
    tile INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (frame, tile)
);
CREATE TABLE IF NOT EXISTS outputs (
    jid INTEGER NOT NULL,
    tid INTEGER NOT NULL,
    relative_path TEXT NOT NULL,
    md5 TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (jid, tid, relative_path)
);
"""

ADDED_COLUMNS = (
    ("tasks", "killed", "REAL NOT NULL DEFAULT 0"),
    ("requests", "params", "TEXT NOT NULL DEFAULT ''"),
    ("requests", "terms", "TEXT NOT NULL DEFAULT ''"),
    ("tasks", "rendered", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "downloaded", "REAL NOT NULL DEFAULT 0"),
    ("tasks", "run_started", "REAL"),
    ("tasks", "run_ended", "REAL"),
    ("tasks", "exit_code", "INTEGER"),
    ("tasks", "will_preempt", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "preemptions", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "preempted", "REAL NOT NULL DEFAULT 0"),
)
"""Columns newer than the first schema: added to a data folder an older sandbox made."""

DEFAULT_SETTINGS: dict[str, Any] = {
    "task_seconds": 2.0,
    "multipart_threshold": 64 * 1024 * 1024,
    "part_size": 16 * 1024 * 1024,
    "fail_frames": [],
    "fail_attempts": 0,
    "preempt_frames": [],
    "preempt_attempts": 0,
    "output_bytes": 0,
    "instances": 2,
    "frame_seconds": 0.0,
}

FRAME_LISTS = ("fail_frames", "preempt_frames")
ATTEMPT_COUNTS = ("fail_attempts", "preempt_attempts")


def validate_settings(values: object) -> dict[str, Any]:
    """Check and normalise ``POST /_sandbox/config`` values; ValueError names the bad one."""
    if not isinstance(values, dict):
        raise ValueError("config must be a JSON object")
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in DEFAULT_SETTINGS:
            raise ValueError(f"unknown setting {key!r}; use one of {', '.join(DEFAULT_SETTINGS)}")
        if key in FRAME_LISTS:
            if not isinstance(value, list) or not all(
                isinstance(f, int) and not isinstance(f, bool) for f in value
            ):
                raise ValueError(f"{key} must be a list of frame numbers")
            clean[key] = sorted(set(value))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number")
        if key in ("task_seconds", "frame_seconds"):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0")
            clean[key] = float(value)
        elif key == "instances":
            if value != int(value) or not 1 <= value <= 64:
                raise ValueError("instances must be a whole number from 1 to 64")
            clean[key] = int(value)
        elif key in ATTEMPT_COUNTS:
            if value != int(value) or value < 0:
                raise ValueError(f"{key} must be a whole number >= 0 (0: every attempt)")
            clean[key] = int(value)
        else:
            if value != int(value) or value < (1 if key == "part_size" else 0):
                raise ValueError(f"{key} must be a whole number of bytes (part_size >= 1)")
            clean[key] = int(value)
    return clean


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """Thread-safe access to the sandbox's SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            for table, column, declaration in ADDED_COLUMNS:
                columns = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except sqlite3.Error as problem:
            raise UserError(
                f"--data: {path} is not a sandbox database ({problem});"
                " move it away to start afresh"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    def execute(self, sql: str, *args: Any) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # settings -----------------------------------------------------------------------------

    def setting(self, key: str) -> Any:
        rows = self.query("SELECT value FROM settings WHERE key = ?", key)
        return json.loads(rows[0]["value"]) if rows else DEFAULT_SETTINGS[key]

    def set_settings(self, values: object) -> None:
        """Store settings after ``validate_settings`` (ValueError names a bad one)."""
        for key, value in validate_settings(values).items():
            self.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", key, json.dumps(value)
            )

    # attempts -----------------------------------------------------------------------------

    def count_attempts(self, frames: Iterable[int], tile: int) -> dict[int, int]:
        """Count one more render of each frame (of this tile; 0: the whole frame); each frame's
        attempt number, 1 for its first render in this sandbox."""
        counted: dict[int, int] = {}
        with self.transaction() as db:
            for frame in sorted(set(frames)):
                db.execute(
                    "INSERT INTO attempts (frame, tile, count) VALUES (?, ?, 1)"
                    " ON CONFLICT (frame, tile) DO UPDATE SET count = count + 1",
                    (frame, tile),
                )
                row = db.execute(
                    "SELECT count FROM attempts WHERE frame = ? AND tile = ?", (frame, tile)
                ).fetchone()
                counted[frame] = int(row["count"])
        return counted

    # tokens -------------------------------------------------------------------------------

    def add_token(self, token: str, expires_at: float) -> None:
        self.execute(
            "INSERT INTO tokens (token, expires_at) VALUES (?, ?)", _token_key(token), expires_at
        )

    def token_valid(self, token: str) -> bool:
        rows = self.query("SELECT expires_at FROM tokens WHERE token = ?", _token_key(token))
        return bool(rows) and rows[0]["expires_at"] > time.time()

    # uploads ------------------------------------------------------------------------------

    def has_upload(self, md5: str) -> bool:
        return bool(self.query("SELECT 1 FROM uploads WHERE md5 = ?", md5))

    def add_upload(self, md5: str, size: int) -> None:
        self.execute("INSERT OR REPLACE INTO uploads (md5, size) VALUES (?, ?)", md5, size)

    def uploads(self) -> dict[str, int]:
        return {row["md5"]: row["size"] for row in self.query("SELECT md5, size FROM uploads")}

    # request log --------------------------------------------------------------------------

    def log_request(
        self,
        method: str,
        path: str,
        status: int,
        storage_bearer: bool,
        params: list[str] = [],  # noqa: B006 (never mutated)
        terms: list[str] = [],  # noqa: B006 (never mutated)
    ) -> None:
        """One request: its parameter names and filter term kinds, never a query value."""
        self.execute(
            "INSERT INTO requests (method, path, status, storage_bearer, params, terms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            method,
            path,
            status,
            int(storage_bearer),
            ",".join(params),
            ",".join(terms),
        )

    def requests(self) -> list[dict[str, Any]]:
        """``[{"method", "path", "status", "params": [names], "terms": [kinds]}]``, oldest first."""
        rows = self.query("SELECT method, path, status, params, terms FROM requests ORDER BY id")
        return [
            {
                "method": row["method"],
                "path": row["path"],
                "status": row["status"],
                "params": [p for p in row["params"].split(",") if p],
                "terms": [t for t in row["terms"].split(",") if t],
            }
            for row in rows
        ]

    def bearer_on_storage(self) -> int:
        rows = self.query("SELECT COUNT(*) AS n FROM requests WHERE storage_bearer = 1")
        return int(rows[0]["n"])

    def reset(self) -> None:
        """Forget jobs, uploads, grants, requests, settings and attempt counts; keep tokens."""
        with self.transaction() as db:
            for table in (
                "jobs",
                "tasks",
                "uploads",
                "grants",
                "multipart",
                "requests",
                "settings",
                "outputs",
                "attempts",
            ):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sqlite_sequence WHERE name = 'jobs'")
