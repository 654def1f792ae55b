"""What every sandbox handler shares: the data folder, its SQLite store, the secrets and faults.

The data folder holds everything, so a restart on the same folder loses nothing:

* ``sandbox.sqlite``: jobs, tasks, tokens, uploads, signed-URL grants, multipart state, settings
  and the request log (``store.py``);
* ``files/<md5 hex>``: uploaded blobs, named by the digest the server computed, never by a path a
  client sent; ``parts/<upload id>/<n>`` holds multipart parts until completion; ``incoming/``
  holds bodies still being received (same file system, so the final rename is atomic);
* ``api_key.json`` (the API key the sandbox accepts) and ``server_secret`` (signs tokens and
  storage URLs), both created once, readable by the owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.sandbox.faults import FaultBook, FaultRule
from prefect_conductor.sandbox.fixture_catalog import fixture_records
from prefect_conductor.sandbox.inflight import InFlight
from prefect_conductor.sandbox.store import Store


def write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only, from the first byte (no chmod window)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _load_or_create(path: Path, make: str) -> str:
    """The text of ``path``, created from ``make`` first if missing; UserError names the file."""
    try:
        if not path.exists():
            write_private(path, make)
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as problem:
        reason = getattr(problem, "strerror", None) or "not UTF-8 text"
        raise UserError(f"--data: cannot read {path} ({reason})") from None


def _api_key(path: Path) -> dict[str, str]:
    """The API key in ``path`` (made on first use); UserError unless it is one."""
    made = {"client_id": f"sandbox-{secrets.token_hex(6)}", "private_key": secrets.token_hex(32)}
    text = _load_or_create(path, json.dumps(made))
    try:
        key = json.loads(text)
    except ValueError:
        key = None
    if not (
        isinstance(key, dict)
        and isinstance(key.get("client_id"), str)
        and isinstance(key.get("private_key"), str)
    ):
        raise UserError(f"--data: {path} is not an API key (client_id, private_key)")
    return {"client_id": key["client_id"], "private_key": key["private_key"]}


class SandboxContext:
    """State shared by the token, storage, job and admin handlers of one sandbox."""

    def __init__(
        self,
        data_dir: Path,
        settings: dict[str, Any] | None = None,
        faults: list[FaultRule] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.generation = 0
        """Counts resets: work started before one belongs to jobs that are gone."""
        self.files_dir = data_dir / "files"
        self.parts_dir = data_dir / "parts"
        self.incoming_dir = data_dir / "incoming"
        for folder in (self.files_dir, self.parts_dir, self.incoming_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as problem:
                raise UserError(f"--data: cannot make {folder} ({problem.strerror})") from None
        self.secret = _load_or_create(data_dir / "server_secret", secrets.token_hex(32)).encode()
        self.api_key = _api_key(data_dir / "api_key.json")
        self.store = Store(data_dir / "sandbox.sqlite")
        self.catalog = fixture_records()
        self.faults = FaultBook()
        self.faults.add(faults or [])
        self.in_flight = InFlight()
        # What a reset returns to: the defaults plus what the server was started with.
        self.base_settings = dict(settings or {})
        self.store.set_settings(self.base_settings)

    def sign(self, text: str) -> str:
        """HMAC-SHA256 of ``text`` with the server secret, as hex."""
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def blob_path(self, md5_digest: bytes) -> Path:
        """Where the blob with this (16-byte) md5 lives: a hex name no client can steer."""
        return self.files_dir / md5_digest.hex()

    def reset(self) -> None:
        """Forget jobs, uploads, requests, faults and settings; keep the key and issued tokens."""
        self.generation += 1  # tasks still running from before are stopped, their ends ignored
        self.faults.clear()
        self.in_flight.reset()
        self.store.reset()
        self.store.set_settings(self.base_settings)
        for folder in (self.files_dir, self.parts_dir, self.incoming_dir):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
