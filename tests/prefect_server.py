"""Helpers around a real Prefect server for the host plugin's end-to-end tests and benches.

The tests use the session's ``prefect_server`` fixture (tests/conftest.py). ``register_deployment``
creates a deployment of the ``render-submit`` flow directly over the REST API with the flow's real
parameter schema and no work pool, so flow runs can be created and inspected without a worker
(and no worker of another test ever picks them up). ``deployed_worker`` deploys
deployments/prefect.yaml on a server and starts one process worker on its pool, as a studio
would. ``running_prefect_server`` starts a server outside pytest, for ``bench/submit_latency.py``:
``prefect server start`` as a subprocess with its own PREFECT_HOME, analytics off and
PREFECT_SERVER_API_HOST/PORT set so the UI's links point at the right port
(research/prefect-notes.md section 5); it is stopped with SIGINT, then killed if it does not exit,
and only the process group it started is signalled.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.eventually import eventually
from tests.processes import stop

START_TIMEOUT = 60.0
REPO = Path(__file__).resolve().parent.parent
DEPLOYED_POOL = "render-submit-pool"
"""The work pool deployments/prefect.yaml names."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    # The test session's own settings (an ephemeral local backend) must not leak into the server:
    # with PREFECT_SERVER_EPHEMERAL_ENABLED set, ``prefect server start`` serves no UI.
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
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    api_url = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {process.returncode}:\n{_tail(log_path)}"
            )
        return httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200

    try:
        eventually(
            healthy,
            what=f"prefect server healthy (log: {log_path})",
            timeout=timeout,
            interval=0.2,
            ignoring=(httpx.TransportError,),
        )
        yield api_url
    finally:
        stop(process, group=True)


def flow_parameter_schema() -> dict[str, Any]:
    """The render-submit flow's parameter schema, as ``prefect deploy`` would store it."""
    from prefect.utilities.callables import parameter_schema

    from prefect_conductor.flows.render_submit import render_submit

    schema: dict[str, Any] = parameter_schema(render_submit).model_dump()
    return schema


HOST_TESTS_DEPLOYMENT = "host-tests"
"""The deployment name the host tests use (PREFECT_CONDUCTOR_DEPLOYMENT), apart from the real
``conductor`` deployment that other end-to-end tests run a worker for."""


def register_deployment(
    api_url: str, flow: str = "render-submit", name: str = HOST_TESTS_DEPLOYMENT
) -> str:
    """Create (or update) the deployment ``flow/name`` with the flow's schema; return its id."""
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
        flow_id = http.post("flows/", json={"name": flow}).raise_for_status().json()["id"]
        body = {
            "name": name,
            "flow_id": flow_id,
            "parameter_openapi_schema": flow_parameter_schema(),
            "enforce_parameter_schema": True,
        }
        created = http.post("deployments/", json=body).raise_for_status().json()
    return str(created["id"])


def flow_runs(api_url: str, deployment_id: str) -> list[dict[str, Any]]:
    """Every flow run of a deployment, oldest first."""
    body = {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
        runs: list[dict[str, Any]] = busy_retried(
            lambda: http.post("flow_runs/filter", json=body)
        ).json()
    return runs


def prefect_cli(api: str, *args: str) -> str:
    """``prefect ARGS`` against ``api`` from the checkout; its output (the test fails otherwise)."""
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": api},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def busy_retried(call: Callable[[], httpx.Response], attempts: int = 20) -> httpx.Response:
    """A call to the test's SQLite-backed Prefect server, again while it answers 503 (busy)."""
    for _ in range(attempts - 1):
        response = call()
        if response.status_code != 503:
            return response.raise_for_status()
        time.sleep(1.0)
    return call().raise_for_status()


@contextmanager
def deployed_worker(api: str, root: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """deployments/prefect.yaml deployed on ``api`` and one process worker on its pool; yields
    the worker. The watcher's schedule is paused: a test runs each watcher pass itself, so no
    scheduled run takes the worker. The worker runs in ``root`` (outside the checkout: the
    module-path entrypoints load the installed package), polls every second, logs to
    ``root/worker.log`` and gets ``env`` on top of this process's environment."""
    prefect_cli(api, "work-pool", "create", DEPLOYED_POOL, "--type", "process", "--overwrite")
    prefect_cli(api, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")
    with httpx.Client(base_url=api, timeout=30) as http:
        watcher = busy_retried(lambda: http.get("/deployments/name/watch-jobs/conductor")).json()
        busy_retried(lambda: http.patch(f"/deployments/{watcher['id']}", json={"paused": True}))
        # Runs the scheduler made before the pause (here or in an earlier test on the session's
        # server) would still reach the worker, resume runs and show up as its child processes.
        scheduled = {
            "deployments": {"id": {"any_": [watcher["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }
        made = busy_retried(lambda: http.post("/flow_runs/filter", json=scheduled)).json()
        for run_id in (run["id"] for run in made):
            busy_retried(lambda: http.delete(f"/flow_runs/{run_id}"))  # noqa: B023
    log = (root / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", DEPLOYED_POOL],
        cwd=root,
        env={
            **os.environ,
            "PREFECT_API_URL": api,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_CONDUCTOR_HOME": str(root / "worker-home"),
            **env,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        stop(process, 20)  # SIGINT first: the worker ignores SIGTERM
        log.close()


def watch_once(server: str) -> dict[str, Any]:
    """One pass of the watch-jobs flow, in this process, against ``server``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_conductor.flows.watch_jobs import watch_jobs

    with temporary_settings({PREFECT_API_URL: server}):
        result: dict[str, Any] = watch_jobs()
    return result
