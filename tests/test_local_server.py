"""The CLI's per-user Prefect server: started once, found again, replaced when stale, stopped.

Every test runs the real console entry point in subprocesses with its own per-user folder, and
stops the server it started (``server stop``) in teardown. The suite's own Prefect backend (the
temporary server of tests/conftest.py) is not involved: these commands run without
PREFECT_SERVER_EPHEMERAL_ENABLED, as a person's shell would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prefect_conductor.local_server.server import LocalServer, ServerState
from prefect_conductor.processes import free_port, pid_alive
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.scenes import EXAMPLES

SERVER_LINE = re.compile(r"^Prefect server: (http://127\.0\.0\.1:\d+) \(pid (\d+)\)$", re.M)
FLOW_RUN_LINE = re.compile(r"^Flow run: (http://127\.0\.0\.1:\d+/runs/flow-run/\S+)$", re.M)
COMMAND = [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """A person's shell: no Prefect API, no temporary-server opt-in, a private per-user folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CONDUCTOR_"))}
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    env["PREFECT_CONDUCTOR_HOME"] = str(home)
    env.update(extra)
    return env


def cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        capture_output=True,
        text=True,
        timeout=400,
        env=cli_env(home, **extra),
    )


def stop_server(home: Path) -> None:
    result = cli(home, "server", "stop")
    assert result.returncode == 0, result.stderr


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh per-user folder; whatever server was started in it is stopped afterwards."""
    yield tmp_path / "home"
    stop_server(tmp_path / "home")


def listening_addresses(port: int) -> set[str]:
    """The local addresses listening on ``port`` (IPv4 and IPv6, from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.mark.usefixtures("cli_subprocess")
def test_two_commands_started_at_once_find_one_server(home: Path) -> None:
    starts = [
        subprocess.Popen(
            [*COMMAND, "server", "start"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(home),
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=400) for process in starts]
    assert [process.returncode for process in starts] == [0, 0], outputs
    servers = {SERVER_LINE.search(stdout).groups() for stdout, _ in outputs}  # type: ignore[union-attr]
    assert len(servers) == 1
    assert sum(err.count("Starting a local Prefect server") for _, err in outputs) == 1
    state = LocalServer(home / "prefect-server", 1800).read_state()
    assert state is not None and pid_alive(state.pid) and pid_alive(state.supervisor_pid)
    assert listening_addresses(state.port) == {"0100007F"}  # 127.0.0.1 only
    status = cli(home, "server", "status")
    assert status.returncode == 0 and state.ui_url in status.stdout
    stopped = cli(home, "server", "stop")
    assert f"Stopped the local Prefect server at {state.ui_url}" in stopped.stdout
    assert not pid_alive(state.pid) and not pid_alive(state.supervisor_pid)
    assert cli(home, "server", "status").returncode == 1


@pytest.mark.usefixtures("cli_subprocess")
def test_a_killed_server_is_replaced_and_the_new_one_stops_when_idle(home: Path) -> None:
    first = cli(home, "server", "start")
    assert first.returncode == 0, first.stderr
    server = LocalServer(home / "prefect-server", 1800)
    killed = server.read_state()
    assert killed is not None
    os.killpg(killed.pid, signal.SIGKILL)
    os.kill(killed.supervisor_pid, signal.SIGKILL)
    eventually(
        lambda: not (pid_alive(killed.pid) or pid_alive(killed.supervisor_pid)),
        what="the killed server and its supervisor gone",
    )
    assert server.read_state() == killed  # the stale state file is still there
    assert cli(home, "server", "status").returncode == 1

    second = cli(home, "server", "start", PREFECT_CONDUCTOR_SERVER_IDLE_MINUTES="0.02")
    assert second.returncode == 0, second.stderr
    assert "Starting a local Prefect server" in second.stderr
    replacement = server.read_state()
    assert replacement is not None and replacement.pid != killed.pid
    # Idle for 1.2 s: its supervisor stops it and forgets it, with no command asking.
    eventually(lambda: server.read_state() is None, what="the idle server forgotten", timeout=120)
    eventually(lambda: not pid_alive(replacement.pid), what="the idle server stopped", timeout=60)


@pytest.mark.usefixtures("cli_subprocess")
def test_with_prefect_api_url_set_no_server_is_started(home: Path) -> None:
    dead_api = f"http://127.0.0.1:{free_port()}/api"
    result = cli(
        home,
        "submit",
        str(EXAMPLES / "job.yaml"),
        PREFECT_API_URL=dead_api,
        CONDUCTOR_API_KEY='{"client_id": "c", "private_key": "k"}',  # checked before Prefect
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and dead_api in errors[0], result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr
    assert not (home / "prefect-server").exists()


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One per-user folder with its server, for the submit tests below."""
    home = tmp_path_factory.mktemp("shared") / "home"
    started = cli(home, "server", "start")
    assert started.returncode == 0, started.stderr
    yield home
    stop_server(home)


def running_state(home: Path) -> ServerState:
    state = LocalServer(home / "prefect-server", 1800).running()
    assert state is not None
    return state


@pytest.mark.usefixtures("cli_subprocess")
def test_submit_reuses_the_server_and_its_links_open_after_it_returns(
    shared_home: Path, sandbox: SandboxHandle
) -> None:
    state = running_state(shared_home)
    result = cli(
        shared_home,
        "submit",
        str(EXAMPLES / "job.yaml"),
        "--poll-seconds",
        "0.05",
        CONDUCTOR_URL=sandbox.url,
        CONDUCTOR_API_KEY=sandbox.api_key,
    )
    assert result.returncode == 0, result.stderr
    assert "Starting a local Prefect server" not in result.stderr
    assert "Failed to send telemetry" not in result.stderr
    assert running_state(shared_home) == state
    match = FLOW_RUN_LINE.search(result.stdout)
    assert match is not None and match.group(1).startswith(state.ui_url), result.stdout
    page = httpx.get(match.group(1), headers={"Accept": "text/html"}, follow_redirects=True)
    assert page.status_code == 200 and "<html" in page.text
    run_id = match.group(1).rsplit("/", 1)[1]
    run = httpx.get(f"{state.api_url}/flow_runs/{run_id}").json()
    assert run["state"]["type"] == "COMPLETED"
    for job in sandbox.jobs():
        assert f"{sandbox.url}/job/{job['jid']}" in result.stdout


@pytest.mark.usefixtures("cli_subprocess")
def test_submit_without_a_key_fails_in_one_line(shared_home: Path, sandbox: SandboxHandle) -> None:
    result = cli(shared_home, "submit", str(EXAMPLES / "job.yaml"), CONDUCTOR_URL=sandbox.url)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no Conductor API key")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [last]
    assert "Traceback" not in result.stderr
    assert sandbox.jobs() == []


@pytest.mark.usefixtures("cli_subprocess")
def test_submit_debug_shows_the_traceback(shared_home: Path, sandbox: SandboxHandle) -> None:
    result = cli(
        shared_home, "--debug", "submit", str(EXAMPLES / "job.yaml"), CONDUCTOR_URL=sandbox.url
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no Conductor API key")


@pytest.mark.usefixtures("cli_subprocess")
def test_submit_preview_prints_the_payloads(shared_home: Path, sandbox: SandboxHandle) -> None:
    result = cli(
        shared_home,
        "submit",
        str(EXAMPLES / "job.yaml"),
        "--preview",
        CONDUCTOR_URL=sandbox.url,
        CONDUCTOR_API_KEY=sandbox.api_key,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Frames Info: 2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    assert "Job 'scout': POST jobs/" in lines and "Job 'full': POST jobs/" in lines
    assert "    frames 3-4:" in lines
    assert "Preview only: nothing was uploaded or submitted." in lines
    assert sandbox.jobs() == []


def test_the_server_lives_in_the_per_user_folder_and_idles_30_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_CONDUCTOR_SERVER_IDLE_MINUTES", raising=False)
    server = LocalServer.for_user()
    assert (server.root, server.idle_seconds) == (tmp_path / "prefect-server", 1800.0)
    monkeypatch.setenv("PREFECT_CONDUCTOR_SERVER_IDLE_MINUTES", "5")
    assert LocalServer.for_user().idle_seconds == 300.0
    assert server.running() is None and server.stop() is None
    assert not server.root.exists()  # asking creates nothing
