"""Stops the CLI's local Prefect server once nobody has used it for a while.

Started by :mod:`prefect_conductor.local_server.server` as
``python -m prefect_conductor.local_server.supervisor ROOT PORT IDLE_SECONDS``, it starts the server
as its own child (which, on Linux, is sent SIGTERM if the supervisor dies, however it dies),
records both in the state file, and stops the server when the per-user folder or the state file
goes. It polls
(over plain HTTP, without importing Prefect, so it stays small) and counts as activity: a command
using the server (the ``last-used`` file), a flow run starting, ending or being updated, and any
flow run still pending, running, paused or cancelling (a scout wait or an approval can outlast
the idle time). The idle decision is taken again under the server lock, so a command that has
just found the server is never left with a server that is stopping. It exits when its server
exits, whoever stopped it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from filelock import Timeout

from prefect_conductor.local_server.server import STOP_TIMEOUT, LocalServer, ServerState

BUSY_STATES = ["PENDING", "RUNNING", "PAUSED", "CANCELLING"]


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def last_activity(state: ServerState, touch_path: Path) -> float:
    """The latest moment anything used the server (now, if a flow run is under way)."""
    now = time.time()
    latest = state.started_at
    with contextlib.suppress(OSError):
        latest = max(latest, touch_path.stat().st_mtime)
    try:
        with httpx.Client(base_url=state.api_url + "/", timeout=10.0) as http:
            busy = {"flow_runs": {"state": {"type": {"any_": BUSY_STATES}}}, "limit": 1}
            if http.post("flow_runs/filter", json=busy).raise_for_status().json():
                return now
            for sort in ("START_TIME_DESC", "END_TIME_DESC"):
                body = {"sort": sort, "limit": 1}
                for run in http.post("flow_runs/filter", json=body).raise_for_status().json():
                    for field in ("updated", "start_time", "end_time"):
                        latest = max(latest, _timestamp(run.get(field)))
    except (httpx.HTTPError, ValueError):
        return now  # not answering (busy, or still starting): not evidence of idleness
    return latest


def poll_seconds(idle_seconds: float) -> float:
    return min(30.0, max(0.5, idle_seconds / 6))


def supervise(server: LocalServer, process: subprocess.Popen[bytes], state: ServerState) -> None:
    """Watch the server ``process``; stop it when idle, or when the folder or the state goes."""

    def ours() -> bool:
        return server.root.is_dir() and server.read_state() == state

    try:
        while process.poll() is None:
            time.sleep(poll_seconds(server.idle_seconds))
            if process.poll() is not None or not ours():
                break
            if time.time() - last_activity(state, server.touch_path) < server.idle_seconds:
                continue
            try:
                with server.lock.acquire(timeout=5.0):
                    if ours() and (
                        time.time() - last_activity(state, server.touch_path) >= server.idle_seconds
                    ):
                        break
            except (Timeout, OSError):
                continue
    finally:
        stop(process)
        with contextlib.suppress(OSError):
            if server.read_state() == state:
                server.state_path.unlink()


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL if it has not gone after a while."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sent)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)


def main(argv: list[str]) -> None:
    root, port, idle_seconds = argv
    server = LocalServer(Path(root), float(idle_seconds))
    process = server.start_server(int(port))
    state = ServerState(process.pid, int(port), os.getpid(), time.time())
    server.write_state(state)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally: stop the server
    supervise(server, process, state)


if __name__ == "__main__":
    main(sys.argv[1:])
