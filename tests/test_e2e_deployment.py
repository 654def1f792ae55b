"""End to end: a real Prefect server and process worker on loopback, the deployment from
deployments/prefect.yaml, a flow run created over REST as the host's Submit does, and the jobs
arriving in the sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.loaders import load_job
from prefect_conductor.conductor_cloud.request import RunOptions, SceneSource
from prefect_conductor.conductor_cloud.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES

REPO = Path(__file__).resolve().parent.parent
POOL = "render-submit-pool"

pytestmark = pytest.mark.e2e


def prefect_cli(api: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": api, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def worker(prefect_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[None]:
    prefect_cli(prefect_server, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect_cli(
        prefect_server,
        "--no-prompt",
        "deploy",
        "--prefect-file",
        "deployments/prefect.yaml",
        "--all",
        env={"PREFECT_CONDUCTOR_CHECKOUT": str(REPO)},
    )
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
        cwd=REPO,
        env={
            **os.environ,
            "PREFECT_API_URL": prefect_server,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "CONDUCTOR_URL": sandbox.url,
            "CONDUCTOR_API_KEY": sandbox.api_key,
            "PREFECT_CONDUCTOR_HOME": str(tmp_path / "worker-home"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # the worker ignores SIGTERM (prefect-notes.md)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_a_rest_created_run_on_a_worker_submits_scout_then_full(
    prefect_server: str, sandbox: SandboxHandle, worker: None
) -> None:
    job = load_job(EXAMPLES / "job.yaml")
    parameters = {
        "job": job.model_dump(mode="json"),
        "scene": SceneSource(export_path=str(EXAMPLES / "scene_export.json")).model_dump(
            mode="json"
        ),
        "options": RunOptions(poll_seconds=0.2, submission_key="e2e-click-1").model_dump(
            mode="json"
        ),
    }
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        deployment = api.get("/deployments/name/render-submit/conductor")
        assert deployment.status_code == 200, deployment.text
        deployment_id = deployment.json()["id"]
        body = {"parameters": parameters, "idempotency_key": "e2e-click-1", "tags": ["from-test"]}
        first = api.post(f"/deployments/{deployment_id}/create_flow_run", json=body)
        second = api.post(f"/deployments/{deployment_id}/create_flow_run", json=body)
        assert first.status_code == 201, first.text
        assert second.json()["id"] == first.json()["id"]  # a double-click is one run
        run_id = first.json()["id"]
        deadline = time.monotonic() + 180
        state = ""
        while time.monotonic() < deadline:
            answer = api.get(f"/flow_runs/{run_id}")
            if answer.status_code != 200:  # SQLite-backed servers answer 503 when busy
                time.sleep(1)
                continue
            state = answer.json()["state"]["type"]
            if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                break
            time.sleep(1)
    assert state == "COMPLETED"
    jobs = sandbox.jobs()
    assert [[t["frames"] for t in j["tasks_data"]] for j in jobs] == [
        ["3-4", "7-8"],
        ["1-2", "5-6", "9-10"],
    ]
