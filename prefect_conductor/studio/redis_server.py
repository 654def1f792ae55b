"""A Redis for the studio's Prefect, from Debian's ``redis-server`` package.

Several API processes share one Prefect server only when what one process used to keep in memory
is shared: the events' messaging and its cache, the causal ordering of events, the background
tasks' queue (docket) and the concurrency limits' leases. Prefect's ``prefect-redis`` puts them
in Redis. Keeping the leases in Redis also lets them outlive an API process: a restarted server
still knows which slot is held until when, and the lease repossessor frees the slots of holders
that died.

This module runs ``redis-server`` on 127.0.0.1 and a free port, its files in
``<per-user folder>/studio/redis`` (append-only file, so leases and queued messages survive
``studio down``/``up``). Redis asks for a password even on loopback, so another local user cannot
read or change the studio's state: the password is made once, kept in a 0600 file beside it, and
reaches Redis through a 0600 configuration file (never a command line, which any local user can
read in ``ps``) and Prefect through its environment; it is never printed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import ServiceError, UserError

INSTALL_HINT = "install Debian's package: apt-get install -y redis-server"
START_TIMEOUT = 30.0
MESSAGING_DB = 0
"""Redis database of Prefect's messaging, cache, event ordering and leases."""
DOCKET_DB = 1
"""Redis database of Prefect's background-task queue (docket)."""


class RedisError(ServiceError):
    """The studio's Redis could not be started."""


def binary() -> Path:
    """Debian's ``redis-server`` (on PATH, or where the package puts it)."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if not found:
        raise UserError(f"Redis: no redis-server on PATH; {INSTALL_HINT}")
    return Path(found)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new 0600 file at ``path`` (an existing file or link is replaced, not
    followed)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _quoted(text: str) -> str:
    """``text`` as one argument of a Redis configuration line (a folder may hold spaces)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class RedisServer:
    """The studio's Redis: its folder, password file and configuration file."""

    folder: Path
    password_file: Path

    @classmethod
    def for_home(cls, studio_dir: Path) -> RedisServer:
        return cls(studio_dir / "redis", studio_dir / "redis.password")

    @property
    def config_file(self) -> Path:
        return self.folder / "redis.conf"

    @property
    def log_file(self) -> Path:
        return self.folder / "redis.log"

    def password(self) -> str:
        """The password, made on first use (0600 from the first byte)."""
        if not self.password_file.exists():
            self.password_file.parent.mkdir(parents=True, exist_ok=True)
            _write_private(self.password_file, secrets.token_urlsafe(24))
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError as problem:
            raise RedisError(
                f"Redis: cannot read {self.password_file} ({problem.strerror})"
            ) from None

    def _configure(self, port: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            "bind 127.0.0.1",
            "protected-mode yes",
            f"port {port}",
            f"requirepass {self.password()}",
            f"dir {_quoted(str(self.folder))}",
            f"logfile {_quoted(str(self.log_file))}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
        ]
        _write_private(self.config_file, "\n".join(lines) + "\n")

    def start(self, port: int) -> subprocess.Popen[bytes]:
        """``redis-server`` on 127.0.0.1:``port`` in a session of its own; returns once it answers
        an authenticated PING."""
        command = [str(binary()), str(self.config_file)]
        self._configure(port)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RedisError(f"Redis exited at start; see {self.log_file}")
            if self.ping(port):
                return process
            time.sleep(0.1)
        process.kill()
        raise RedisError(f"Redis did not answer in {START_TIMEOUT:g} s; see {self.log_file}")

    def ping(self, port: int) -> bool:
        """Whether Redis on ``port`` answers PING after AUTH with our password (plain RESP)."""
        secret = self.password().encode()
        request = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(secret), secret)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as link:
                link.sendall(request)
                answer = b""
                while answer.count(b"\r\n") < 2:
                    chunk = link.recv(256)
                    if not chunk:
                        break
                    answer += chunk
        except OSError:
            return False
        return answer == b"+OK\r\n+PONG\r\n"

    def url(self, port: int, db: int) -> str:
        """A ``redis://`` URL with the password (environment only, never printed)."""
        return f"redis://:{self.password()}@127.0.0.1:{port}/{db}"

    def prefect_env(self, port: int) -> dict[str, str]:
        """The settings that put Prefect's messaging, cache, event ordering, leases and
        background-task queue in this Redis (``prefect-redis``)."""
        return {
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
            "PREFECT_REDIS_MESSAGING_PORT": str(port),
            "PREFECT_REDIS_MESSAGING_DB": str(MESSAGING_DB),
            "PREFECT_REDIS_MESSAGING_PASSWORD": self.password(),
            "PREFECT_SERVER_DOCKET_URL": self.url(port, DOCKET_DB),
        }
