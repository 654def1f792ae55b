"""Stops the CLI's local Prefect server once nobody has used it for a while.

Run by :mod:`prefect_conductor.local_server.server` beside each server it starts, as
``python -m prefect_conductor.local_server.supervisor ROOT SERVER_PID PORT IDLE_SECONDS``. It polls
(over plain HTTP, without importing Prefect, so it stays small) and counts as activity: a command
using the server (the ``last-used`` file), a flow run starting, ending or being updated, and any
flow run still pending, running, paused or cancelling (a scout wait or an approval can outlast
the idle time). The idle decision is taken again under the server lock, so a command that has
just found the server is never left with a server that is stopping. It exits when its server
exits, whoever stopped it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from filelock import Timeout

from prefect_conductor.local_server.server import LocalServer, ServerState, pid_alive, terminate

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


def supervise(server: LocalServer, pid: int, port: int, idle_seconds: float) -> None:
    """Watch the server ``pid``; stop it after ``idle_seconds`` without activity."""

    def ours() -> ServerState | None:
        state = server.read_state()
        return state if state is not None and (state.pid, state.port) == (pid, port) else None

    while True:
        time.sleep(poll_seconds(idle_seconds))
        state = ours()
        if state is None or not pid_alive(pid):
            break
        if time.time() - last_activity(state, server.touch_path) < idle_seconds:
            continue
        try:
            with server.lock.acquire(timeout=5.0):
                state = ours()
                if state is None:
                    break
                if time.time() - last_activity(state, server.touch_path) < idle_seconds:
                    continue
                terminate(pid, "prefect", "server", group=True)
                server.state_path.unlink(missing_ok=True)
                break
        except Timeout:
            continue


def main(argv: list[str]) -> None:
    root, pid, port, idle_seconds = argv
    server = LocalServer(Path(root), float(idle_seconds))
    supervise(server, int(pid), int(port), float(idle_seconds))


if __name__ == "__main__":
    main(sys.argv[1:])
