"""The CLI's one per-user Prefect server on loopback: found and reused, else started once.

Without ``PREFECT_API_URL``, Prefect runs each flow on a temporary server that starts with the
process and dies with it: every ``submit`` paid 10-20 s of start-up, and the links it printed
were dead by the time a person clicked them. Instead the first command that needs Prefect starts
``prefect server start`` in the background (127.0.0.1, a free port, its own PREFECT_HOME under the
per-user folder, analytics off) beside a small supervisor
(:mod:`prefect_conductor.local_server.supervisor`) that stops it after ``server_idle_minutes`` without
activity. Later commands find it through the state file and reuse it.

"Check, else start" runs under a file lock, so two commands started at the same moment make one
server: the second waits for the lock and finds the first one's server healthy. A state file whose
server is gone (killed, crashed, rebooted) or does not answer is stale: whatever is left of it is
stopped and a new server replaces it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from filelock import FileLock, Timeout

from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.settings import ConductorSettings, get_settings

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 180.0
"""Seconds to wait for a new server's health check (a fresh database migrates first)."""
STOP_TIMEOUT = 15.0
BUSY_GRACE = 20.0
"""Seconds a live server that does not answer (busy SQLite, a loaded machine) is given before it
is taken for hung and replaced."""
LOCK_TIMEOUT = START_TIMEOUT + 30.0
"""A command waiting for another one's start-up waits at least that long for the lock."""

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


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child of this process is reaped, not counted as alive)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def looks_like(pid: int, *words: str) -> bool:
    """Whether ``pid``'s command line holds ``words``: never signal a recycled pid of another
    program. Without /proc (not Linux) the pid is trusted only if it is alive."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return pid_alive(pid)
    try:
        text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return all(word in text for word in words)


def terminate(pid: int, *words: str, group: bool = False) -> None:
    """Stop ``pid`` (and its process group when it leads one): SIGTERM, then SIGKILL."""
    if not pid_alive(pid) or not looks_like(pid, *words):
        return
    send: Callable[[int, int], None] = os.killpg if group else os.kill
    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                send(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + STOP_TIMEOUT
        time.sleep(0.1)


def free_port() -> int:
    """A port nobody listens on at the moment, on loopback."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def healthy(state: ServerState, timeout: float = 3.0) -> bool:
    """Whether the server answers its health check."""
    try:
        return httpx.get(f"{state.api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def server_environment(home: Path, port: int) -> dict[str, str]:
    """The server's environment: its own PREFECT_HOME, loopback, analytics off.

    The API host and port go in as settings (not only flags) so the UI's links name the right
    port; the caller's Prefect client settings must not leak into the server.
    """
    env = dict(os.environ)
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
        self.prefect_home = self.root / "prefect-home"
        self.lock = FileLock(str(self.root / "server.lock"))

    @classmethod
    def for_user(cls, settings: ConductorSettings | None = None) -> LocalServer:
        """The server the settings name (per-user folder and idle time)."""
        settings = settings or get_settings()
        return cls(settings.prefect_server_dir, settings.server_idle_minutes * 60.0)

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

    def running(self) -> ServerState | None:
        """The recorded server if it is alive and answers; None otherwise (nothing is changed)."""
        state = self.read_state()
        if state is not None and pid_alive(state.pid) and healthy(state):
            return state
        return None

    def ensure(self, echo: Callable[[str], None]) -> ServerState:
        """The running server, started first if there is none (one line through ``echo``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with self.lock.acquire(timeout=LOCK_TIMEOUT):
                state = self._answering()
                if state is None:
                    self._clear_stale()
                    state = self._start(echo)
                elif not pid_alive(state.supervisor_pid):
                    state = self._supervise(state)
                self.touch()
                return state
        except Timeout:
            raise LocalServerError(
                f"{self.lock.lock_file}: another command held the local server's lock for"
                f" {LOCK_TIMEOUT:g} s"
            ) from None

    def _answering(self) -> ServerState | None:
        """The recorded server if it answers, allowing a busy one ``BUSY_GRACE`` seconds."""
        state = self.read_state()
        if state is None or not pid_alive(state.pid):
            return None
        deadline = time.monotonic() + BUSY_GRACE
        while not healthy(state):
            if time.monotonic() > deadline or not looks_like(state.pid, "prefect", "server"):
                return None
            time.sleep(0.5)
        return state

    def stop(self) -> ServerState | None:
        """Stop the server and its supervisor; return what was stopped (None: nothing ran)."""
        if not self.root.is_dir():
            return None
        with self.lock.acquire(timeout=LOCK_TIMEOUT):
            state = self.read_state()
            if state is None:
                return None
            was_running = pid_alive(state.pid)
            self._clear_stale()
            return state if was_running else None

    def _clear_stale(self) -> None:
        """Stop what is left of a recorded server and forget it (the lock is held)."""
        state = self.read_state()
        if state is not None:
            terminate(state.supervisor_pid, "server_supervisor")
            terminate(state.pid, "prefect", "server", group=True)
        self.state_path.unlink(missing_ok=True)

    def _spawn(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a detached process (own session: a Ctrl-C in the terminal does not reach it)."""
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
            )
        _children.append(process)
        return process

    def _start(self, echo: Callable[[str], None]) -> ServerState:
        """Start a server on a free port and wait for its health check (the lock is held)."""
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        port = free_port()
        echo(
            f"Starting a local Prefect server: http://{LOOPBACK}:{port} (stops after"
            f" {self.idle_seconds / 60:g} min idle, or `prefect-conductor server stop`)"
        )
        command = [sys.executable, "-m", "prefect", "server", "start"]
        command += ["--host", LOOPBACK, "--port", str(port)]
        server = self._spawn(command, server_environment(self.prefect_home, port))
        state = self._supervise(
            ServerState(pid=server.pid, port=port, supervisor_pid=0, started_at=time.time())
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(state, timeout=2.0):
            if not pid_alive(server.pid) or time.monotonic() > deadline:
                self._clear_stale()
                raise LocalServerError(
                    f"the local Prefect server did not start on port {port}; see {self.log_path}"
                )
            time.sleep(0.25)
        return state

    def _supervise(self, state: ServerState) -> ServerState:
        """Start the idle supervisor for ``state``'s server and record both."""
        command = [sys.executable, "-m", "prefect_conductor.local_server.supervisor"]
        command += [str(self.root), str(state.pid), str(state.port), str(self.idle_seconds)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
        supervisor = self._spawn(command, env)
        state = ServerState(state.pid, state.port, supervisor.pid, state.started_at)
        self.write_state(state)
        return state
