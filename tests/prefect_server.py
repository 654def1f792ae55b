"""Helpers around a real Prefect server for the host plugin's end-to-end tests and benches.

The tests use the session's ``prefect_server`` fixture (tests/conftest.py). ``register_deployment``
creates a deployment of the ``render-submit`` flow directly over the REST API with the flow's real
parameter schema and no work pool, so flow runs can be created and inspected without a worker
(and no worker of another test ever picks them up). ``deployed_worker`` deploys
deployments/prefect.yaml on a server and starts one process worker on its pool, as a studio
would. A throwaway server outside the session's fixture comes from
``prefect_conductor.studio.scratch_server``, which the benchmarks share.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from prefect_conductor.processes import stop

REPO = Path(__file__).resolve().parent.parent
DEPLOYED_POOL = "render-submit-pool"
"""The work pool deployments/prefect.yaml names."""


def flow_parameter_schema() -> dict[str, Any]:
    """The render-submit flow's parameter schema, as ``prefect deploy`` would store it."""
    from prefect.utilities.callables import parameter_schema

    from prefect_conductor.flows.render_submit import render_submit

    schema: dict[str, Any] = parameter_schema(render_submit).model_dump()
    return schema


HOST_TESTS_DEPLOYMENT = "host-tests"
"""The deployment name the host tests use (PREFECT_CONDUCTOR_DEPLOYMENT), apart from the real
``submit-to-conductor`` deployment that other end-to-end tests run a worker for."""


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
    the worker. The watcher deployment is paused, so neither its schedule nor a suspending run
    starts a watcher that would take the worker: a test runs each watcher pass itself. The
    worker runs in ``root`` (outside the checkout: the module-path entrypoints load the
    installed package), polls every second, logs to ``root/worker.log`` and gets ``env`` on top
    of this process's environment."""
    prefect_cli(api, "work-pool", "create", DEPLOYED_POOL, "--type", "process", "--overwrite")
    prefect_cli(api, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")
    with httpx.Client(base_url=api, timeout=30) as http:
        watcher = busy_retried(
            lambda: http.get("/deployments/name/watch-jobs/resume-waiting-runs")
        ).json()
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


def start_deployment_run(
    api: httpx.Client, name: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    """A new run of deployment ``name`` (``flow/deployment``) with ``parameters``, asked again
    while the server answers busy."""
    deployment = busy_retried(lambda: api.get(f"/deployments/name/{name}")).json()
    return dict(
        busy_retried(
            lambda: api.post(
                f"/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": parameters},
            )
        ).json()
    )
