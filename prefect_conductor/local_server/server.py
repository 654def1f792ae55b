"""The CLI's one per-user Prefect server on loopback: found and reused, else started once.

Without ``PREFECT_API_URL``, Prefect runs each flow on a temporary server that starts with the
process and dies with it: every ``submit`` paid 10-20 s of start-up, and the links it printed
were dead by the time a person clicked them. Instead the first command that needs Prefect starts
``prefect server start`` in the background (127.0.0.1, a free port, its own PREFECT_HOME under the
per-user folder, analytics off) beside a small supervisor
(:mod:`prefect_conductor.local_server.supervisor`) that stops it after ``server_idle_minutes``
without activity. Later commands find it through the state file and reuse it.

"Check, else start" runs under a file lock, so two commands started at the same moment make one
server: the second waits for the lock and finds the first one's server healthy. A state file whose
server is gone (killed, crashed, rebooted) or does not answer is stale: whatever is left of it is
stopped and a new server replaces it.

Only a provably ours process is reused or signalled: the server must answer ``/api/admin/settings``
with its PREFECT_HOME, a folder named by a random secret that only the private per-user folder
holds, and before a signal the process's own environment must name that folder (on Linux, where
``/proc`` shows it). The per-user folder and Prefect's database (which holds Prefect's block key,
run parameters and logs) are private (0700/0600); a folder that others can write is refused. The
server and its supervisor start without Conductor's credentials in their environment. The server
is its supervisor's child and dies with it (Linux: parent-death signal), and the supervisor stops
it when the per-user folder or the state file goes.

Prefect's own ``prefect server start --background``, ``status`` and ``stop`` were measured and left
out: ``--background`` took 11 s longer to return on a loaded machine (a second Prefect import),
leaves the server writing into pipes nobody reads (no log when start-up fails) and a pid file
behind; ``status`` is one health check behind a Prefect import; ``stop`` signals whatever pid its
file holds, the trust this module must not give.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from filelock import FileLock, Timeout

from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.job.catalog import writable_by_others
from prefect_conductor.conductor_cloud.settings import ConductorSettings, get_settings
from prefect_conductor.processes import end, free_port, pid_alive

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 180.0
"""Seconds to wait for a new server's health check (a fresh database migrates first)."""
STOP_TIMEOUT = 15.0
BUSY_GRACE = 20.0
"""Seconds a live server that does not answer (busy SQLite, a loaded machine) is given before it
is taken for hung and replaced."""
LOCK_TIMEOUT = START_TIMEOUT + 30.0
"""A command waiting for another one's start-up waits at least that long for the lock."""
SUPERVISOR_MODULE = "prefect_conductor.local_server.supervisor"
PRIVATE = 0o077

_children: list[subprocess.Popen[bytes]] = []
"""Processes this interpreter started, kept so they are never garbage-collected as "still
running" (they are meant to outlive the command)."""


class LocalServerError(ServiceError):
    """The local Prefect server could not be started or stopped."""


@dataclass(frozen=True)
class ServerState:
    """What the state file records about the running server and its supervisor."""

    pid: int
    port: int
    supervisor_pid: int
    started_at: float

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def clean_environment() -> dict[str, str]:
    """This process's environment without Conductor's credentials or settings (``CONDUCTOR_*``)."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("CONDUCTOR_")}


def process_names(pid: int, needle: str) -> bool:
    """Whether ``pid``'s own environment or command line names ``needle`` (True without /proc).

    A process's environment is readable only by its owner, so a match proves the process was
    started by us for this folder: a recycled pid, or another user's server, does not match.
    """
    if not Path("/proc/self/environ").exists():
        return pid_alive(pid)
    try:
        found = (
            Path(f"/proc/{pid}/environ").read_bytes() + Path(f"/proc/{pid}/cmdline").read_bytes()
        )
    except OSError:
        return False
    return needle.encode() in found


def server_environment(home: Path, port: int) -> dict[str, str]:
    """The server's environment: its own PREFECT_HOME, loopback, analytics off.

    The API host and port go in as settings (not only flags) so the UI's links name the right
    port; the caller's Prefect client settings must not leak into the server.
    """
    env = clean_environment()
    for name in (
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_API_AUTH_STRING",
        "PREFECT_UI_URL",
        "PREFECT_UI_API_URL",
        "PREFECT_SERVER_EPHEMERAL_ENABLED",
        "PREFECT_PROFILE",
    ):
        env.pop(name, None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_API_HOST=LOOPBACK,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


class LocalServer:
    """The per-user server's files (under ``settings.prefect_server_dir``) and lifecycle."""

    def __init__(self, root: Path, idle_seconds: float) -> None:
        self.root = root
        self.idle_seconds = idle_seconds
        self.state_path = self.root / "server.json"
        self.log_path = self.root / "server.log"
        self.touch_path = self.root / "last-used"
        self.secret_path = self.root / "secret"
        self.lock = FileLock(str(self.root / "server.lock"))

    @classmethod
    def for_user(cls, settings: ConductorSettings | None = None) -> LocalServer:
        """The server the settings name (per-user folder and idle time)."""
        settings = settings or get_settings()
        return cls(settings.prefect_server_dir, settings.server_idle_minutes * 60.0)

    @property
    def prefect_home(self) -> Path:
        """The server's PREFECT_HOME: named by the folder's secret (made on first use, 0600)."""
        try:
            secret = self.secret_path.read_text().strip()
        except FileNotFoundError:
            secret = secrets.token_hex(16)
            with contextlib.suppress(FileExistsError):
                descriptor = os.open(self.secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(secret)
            secret = self.secret_path.read_text().strip()
        return self.root / f"prefect-home-{secret}"

    def _private(self) -> None:
        """Create the folder private; refuse it, in one line, when others can write it."""
        self.root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.mkdir(mode=0o700, exist_ok=True)
        for where in (self.root, self.root.parent):
            if writable_by_others(where):
                raise UserError(
                    f"{self.root}: the local Prefect server is not started: {where} can be"
                    " written by other users (make it yours and `chmod go-w` it)"
                )
        if stat.S_IMODE(self.root.stat().st_mode) & PRIVATE:
            self.root.chmod(0o700)

    def read_state(self) -> ServerState | None:
        """The recorded server, or None (no file, or a file from another version)."""
        try:
            return ServerState(**json.loads(self.state_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write_state(self, state: ServerState) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(state)))
        os.replace(temporary, self.state_path)

    def touch(self) -> None:
        """Record a use, so the supervisor counts it as activity."""
        self.touch_path.touch()

    def answers(self, state: ServerState, timeout: float = 3.0) -> bool:
        """Whether the server on ``state``'s port is ours: it reports our PREFECT_HOME."""
        try:
            reply = httpx.get(f"{state.api_url}/admin/settings", timeout=timeout)
            return reply.status_code == 200 and reply.json().get("home") == str(self.prefect_home)
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def ours(self, pid: int) -> bool:
        """Whether ``pid`` is this folder's server or supervisor (its environment says so)."""
        return (
            pid > 0 and pid_alive(pid) and process_names(pid, f"PREFECT_HOME={self.prefect_home}")
        )

    def running(self) -> ServerState | None:
        """The recorded server if it lives and is provably ours; else None (nothing changes)."""
        if not self.root.is_dir():
            return None
        state = self.read_state()
        if state is not None and pid_alive(state.pid) and self.answers(state):
            return state
        return None

    @contextlib.contextmanager
    def _locked(self, echo: Callable[[str], None]) -> Iterator[None]:
        """Hold the lock; if another command holds it, ``echo`` says what this one waits for."""
        try:
            self.lock.acquire(timeout=0.5)
        except Timeout:
            echo(
                f"Waiting up to {LOCK_TIMEOUT:g} s for {self.lock.lock_file}: another"
                " prefect-conductor command is starting or stopping the local Prefect server"
            )
            try:
                self.lock.acquire(timeout=LOCK_TIMEOUT)
            except Timeout:
                raise LocalServerError(
                    f"{self.lock.lock_file}: another command held the local server's lock for"
                    f" {LOCK_TIMEOUT:g} s"
                ) from None
        try:
            yield
        finally:
            self.lock.release()

    def ensure(self, echo: Callable[[str], None]) -> ServerState:
        """The running server, started first if there is none (one line through ``echo``)."""
        self._private()
        with self._locked(echo):
            state = self._answering()
            if state is None:
                self._clear_stale()
                state = self._start(echo)
            self.touch()
            return state

    def _answering(self) -> ServerState | None:
        """The recorded server if it and its supervisor live and it answers as ours (a busy one
        is given ``BUSY_GRACE`` seconds)."""
        state = self.read_state()
        if state is None or not self.ours(state.pid):
            return None
        if not self.ours(state.supervisor_pid):
            return None
        deadline = time.monotonic() + BUSY_GRACE
        while not self.answers(state):
            if time.monotonic() > deadline or not self.ours(state.pid):
                return None
            time.sleep(0.5)
        return state

    def stop(self, echo: Callable[[str], None] = lambda _line: None) -> ServerState | None:
        """Stop the server and its supervisor; return what was stopped (None: nothing ran)."""
        if not self.root.is_dir():
            return None
        with self._locked(echo):
            state = self.read_state()
            if state is None:
                return None
            was_running = self.ours(state.pid)
            self._clear_stale()
            return state if was_running else None

    def _clear_stale(self) -> None:
        """Stop what is left of a recorded server and forget it (the lock is held).

        Only processes whose own environment names this folder's server are signalled.
        """
        state = self.read_state()
        if state is not None:
            if self.ours(state.pid):
                end(state.pid, group=True, timeout=STOP_TIMEOUT)
            if self.ours(state.supervisor_pid):
                end(state.supervisor_pid, timeout=STOP_TIMEOUT)
        self.state_path.unlink(missing_ok=True)

    def spawn(
        self, command: list[str], env: dict[str, str], **options: Any
    ) -> subprocess.Popen[bytes]:
        """Start a process in the folder, writing its log there, creating private files."""
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                umask=PRIVATE,
                **options,
            )
        _children.append(process)
        return process

    def start_server(self, port: int) -> subprocess.Popen[bytes]:
        """Start the Prefect server as this process's child (the supervisor calls this)."""
        home = self.prefect_home
        old = self.root / "prefect-home"
        if old.is_dir() and not home.exists():
            old.rename(home)  # the folder of earlier versions, with its runs
        home.mkdir(mode=0o700, exist_ok=True)
        for path in [home, *home.iterdir()]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        command = [sys.executable, "-m", "prefect", "server", "start"]
        command += ["--host", LOOPBACK, "--port", str(port)]
        return self.spawn(
            command,
            server_environment(home, port),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _start(self, echo: Callable[[str], None]) -> ServerState:
        """Start the supervisor, which starts the server; wait until it answers (lock held)."""
        port = free_port()
        echo(
            f"Starting a local Prefect server: http://{LOOPBACK}:{port} (stops after"
            f" {self.idle_seconds / 60:g} min idle, or `prefect-conductor server stop`)"
        )
        command = [sys.executable, "-m", SUPERVISOR_MODULE]
        command += [str(self.root), str(port), str(self.idle_seconds)]
        env = {k: v for k, v in clean_environment().items() if not k.startswith("PREFECT_API_")}
        env["PREFECT_HOME"] = str(self.prefect_home)
        supervisor = self.spawn(command, env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            state = self.read_state()
            mine = state is not None and state.supervisor_pid == supervisor.pid
            if mine and state is not None and self.answers(state, timeout=2.0):
                return state
            if supervisor.poll() is not None or time.monotonic() > deadline:
                self._clear_stale()
                raise LocalServerError(
                    f"the local Prefect server did not start on port {port}; see {self.log_path}"
                )
            time.sleep(0.25)


def _die_with_parent() -> None:
    """In the child before it runs: on Linux, be sent SIGTERM when the parent (supervisor) dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
