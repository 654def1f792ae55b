"""A throwaway ``prefect server start`` in a folder of its own, for benchmarks and tests.

The server gets its own PREFECT_HOME under the folder, analytics off, and
PREFECT_SERVER_API_HOST/PORT set so the UI's links point at its port; the caller's own Prefect
settings (an API URL, a key, the local ephemeral backend) never reach it. It is stopped with
SIGINT, then killed if it does not exit, and only the process group it started is signalled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from prefect_conductor.processes import LOOPBACK, free_port, stop

START_TIMEOUT = 60.0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_prefect_server(root: Path, timeout: float = START_TIMEOUT) -> Iterator[str]:
    """Start ``prefect server start`` under ``root``; yield its API URL; stop it."""
    port = free_port()
    home = root / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # With PREFECT_SERVER_EPHEMERAL_ENABLED set, ``prefect server start`` serves no UI.
    for name in (
        "PREFECT_API_URL",
        "PREFECT_API_KEY",
        "PREFECT_API_AUTH_STRING",
        "PREFECT_SERVER_EPHEMERAL_ENABLED",
    ):
        env.pop(name, None)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST=LOOPBACK,
        PREFECT_SERVER_API_PORT=str(port),
    )
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    api_url = f"http://{LOOPBACK}:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited with {process.returncode}:\n{_tail(log_path)}"
                )
            try:
                if httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server not healthy in {timeout} s:\n{_tail(log_path)}")
            time.sleep(0.2)
        yield api_url
    finally:
        stop(process, group=True)
