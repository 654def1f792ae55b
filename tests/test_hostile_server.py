"""The local Prefect server trusts only what is provably ours, and never outlives its folder.

A recycled pid or another ``prefect server`` is never signalled, a server that merely answers on
the recorded port is never reused, a folder others can write is refused, the folder and Prefect's
database are private, Conductor's credentials stay out of the server's environment, the server
stops when its supervisor or its folder goes, and a command waiting for the lock says so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prefect_conductor.local_server.server import LocalServer, ServerState
from prefect_conductor.processes import pid_alive
from tests.test_local_server import COMMAND, cli, cli_env, stop_server

SECRET_KEY = '{"client_id": "c", "private_key": "NEVER-IN-THE-SERVER"}'


def server_of(home: Path) -> LocalServer:
    return LocalServer(home / "prefect-server", 1800)


def wait_gone(pid: int, seconds: float = 90.0) -> bool:
    deadline = time.monotonic() + seconds
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not pid_alive(pid)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """Someone else's process whose command line looks like a Prefect server."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "prefect", "server", "start"],
        start_new_session=True,
    )
    yield process
    process.kill()
    process.wait()


class ForeignServer:
    """Another Prefect-like server on loopback: healthy, with its own PREFECT_HOME."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"home": "/somebody/else"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.usefixtures("cli_subprocess")
def test_a_recorded_pid_that_is_not_ours_is_never_signalled_nor_reused(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    home = tmp_path / "home"
    server = server_of(home)
    foreign = ForeignServer()
    try:
        server.root.mkdir(parents=True, mode=0o700)
        server.write_state(ServerState(stranger.pid, foreign.port, stranger.pid, time.time()))
        status = cli(home, "server", "status")
        assert status.returncode == 1, status.stdout
        stopped = cli(home, "server", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "No local Prefect server was running." in stopped.stdout
        time.sleep(0.5)
        assert stranger.poll() is None  # still running: never signalled
        assert server.read_state() is None  # the stale record is forgotten
    finally:
        foreign.server.shutdown()


@pytest.mark.usefixtures("cli_subprocess")
def test_a_per_user_folder_others_can_write_is_refused_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "prefect-server").mkdir(parents=True)
    (home / "prefect-server").chmod(0o777)
    result = cli(home, "server", "start")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: {home / 'prefect-server'}: the local Prefect server is not started:"
        f" {home / 'prefect-server'} can be written by other users (make it yours and"
        " `chmod go-w` it)"
    ]
    assert list((home / "prefect-server").iterdir()) == []


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.usefixtures("cli_subprocess")
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_a_private_server_without_conductor_credentials_that_dies_with_its_supervisor(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    started = cli(home, "server", "start", CONDUCTOR_API_KEY=SECRET_KEY)
    try:
        assert started.returncode == 0, started.stderr
        server = server_of(home)
        state = server.read_state()
        assert state is not None
        for pid in (state.pid, state.supervisor_pid):
            assert not [name for name in environment_of(pid) if name.startswith("CONDUCTOR_")]
        assert stat.S_IMODE(server.root.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.prefect_home.stat().st_mode) == 0o700
        database = server.prefect_home / "prefect.db"
        assert database.exists()
        for path in (database, server.secret_path):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        os.kill(state.supervisor_pid, signal.SIGKILL)
        assert wait_gone(state.pid), "the server outlived its supervisor"
    finally:
        stop_server(home)


@pytest.mark.usefixtures("cli_subprocess")
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_the_server_stops_when_its_folder_is_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    started = cli(home, "server", "start", PREFECT_CONDUCTOR_SERVER_IDLE_MINUTES="1")
    assert started.returncode == 0, started.stderr
    state = server_of(home).read_state()
    assert state is not None
    shutil.rmtree(home)
    assert wait_gone(state.pid), "the server outlived its folder"
    assert wait_gone(state.supervisor_pid)


@pytest.mark.usefixtures("cli_subprocess")
def test_stop_says_what_it_waits_for(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = server_of(home)
    server.root.mkdir(parents=True, mode=0o700)
    server.write_state(ServerState(0, 1, 0, 0.0))
    with server.lock.acquire(timeout=5):
        stopping = subprocess.Popen(
            [*COMMAND, "server", "stop"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(home),
        )
        assert stopping.stderr is not None
        line = stopping.stderr.readline()
    _out, err = stopping.communicate(timeout=120)
    assert line.startswith(f"Waiting up to 210 s for {server.lock.lock_file}: another"), line
    assert stopping.returncode == 0, err
