"""The studio stack end to end: PostgreSQL, a Prefect server on it, 4 workers.

``prefect-conductor studio up`` on loopback. First, fairness: with a 40-shot batch waiting, the
next run the pool hands a worker is an artist's Submit. Then 20 artists press Submit at once,
each twice (a double click), as the host does: ``POST deployments/<id>/create_flow_run`` with the
press's idempotency key. Every press must make exactly one flow run and each run one scout and
one full job; the sandbox never serves more job posts at once than the studio-wide limit;
``studio down`` leaves nothing running. Needs Debian's ``postgresql`` package (.ci/run installs
it; without it the test is skipped, naming the package).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.cli.deployment_params import deployment_parameters
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.processes import pid_alive
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.studio.postgres import Cluster
from tests.eventually import eventually
from tests.scenes import EXAMPLES

PRESSES = 20
WORKERS = 4
JOB_POST_LIMIT = 2
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def studio(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from prefect_conductor.cli.main import main; main()",
        "studio",
    ]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def press(api_url: str, deployment_id: str, parameters: dict[str, Any], key: str) -> str:
    """One Submit press, as the host sends it; the flow run's id."""
    body = {"parameters": parameters, "idempotency_key": key, "tags": ["host:jobs"]}
    with httpx.Client(base_url=api_url + "/", timeout=60.0) as http:
        response = http.post(f"deployments/{deployment_id}/create_flow_run", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def batch_waits_behind_a_submit(
    api_url: str, deployment_id: str, parameters: dict[str, Any]
) -> None:
    """40 shots of a batch (the ``batch`` queue) are waiting, then one artist presses Submit:
    the pool hands a worker the Submit before any shot of the batch. Asked the way workers ask
    (``get_scheduled_flow_runs``); the runs are scheduled an hour ahead, so the live workers
    never take them, and are deleted afterwards."""
    soon = datetime.now(UTC) + timedelta(hours=1)
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:

        def scheduled(key: str, at: datetime, queue: str | None = None) -> str:
            options = {"submission_key": key, "follow": "no"}
            body: dict[str, Any] = {
                "parameters": {**parameters, "options": options},
                "idempotency_key": key,
                "state": {
                    "type": "SCHEDULED",
                    "state_details": {"scheduled_time": at.isoformat()},
                },
            }
            if queue:
                body["work_queue_name"] = queue
            made = http.post(f"deployments/{deployment_id}/create_flow_run", json=body)
            return str(made.raise_for_status().json()["id"])

        batch = [scheduled(f"fair-batch-{n}", soon, "batch") for n in range(40)]
        submit = scheduled("fair-submit", soon + timedelta(minutes=5))  # later, yet first
        ask = {"scheduled_before": (soon + timedelta(hours=1)).isoformat(), "limit": 200}
        handed = http.post("work_pools/studio/get_scheduled_flow_runs", json=ask).json()
        for run_id in [*batch, submit]:
            http.delete(f"flow_runs/{run_id}").raise_for_status()
    order = [item["flow_run"]["id"] for item in handed]  # the watcher's scheduled runs too
    assert set(batch) | {submit} <= set(order)
    assert order.index(submit) < min(order.index(run_id) for run_id in batch)


@pytest.mark.studio
@pytest.mark.timeout(600)
def test_twenty_artists_submit_through_the_postgres_stack_without_duplicates(
    postgresql: Path, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "PREFECT_CONDUCTOR_HOME": str(home),
        "CONDUCTOR_URL": sandbox.url,
        "CONDUCTOR_API_KEY": sandbox.api_key,
        "PREFECT_CONDUCTOR_JOB_POST_LIMIT": str(JOB_POST_LIMIT),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    started = studio("up", "--workers", str(WORKERS), env=env)
    state: dict[str, Any] = {}
    try:
        assert started.returncode == 0, started.stderr
        assert "PREFECT_API_URL=" in started.stdout
        state = json.loads((home / "studio" / "state.json").read_text())
        assert "password" not in json.dumps(state) and "postgresql" not in started.stdout
        api_url = state["api_url"]
        with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
            deployment = http.get("deployments/name/render-submit/submit-to-conductor").json()
        parameters = json.loads(
            deployment_parameters(EXAMPLES / "job.yaml", scene=EXAMPLES / "scene_export.json")
        )
        batch_waits_behind_a_submit(api_url, deployment["id"], parameters)
        presses = []
        for n in range(PRESSES):
            # Submissions are what this test counts; following the render is test_waiting's.
            options = {"submission_key": f"press-{n}", "poll_seconds": 0.2, "follow": "no"}
            presses.extend([(n, {**parameters, "options": options})] * 2)  # a double click
        with ThreadPoolExecutor(max_workers=PRESSES) as pool:
            run_ids = list(
                pool.map(
                    lambda item: press(api_url, deployment["id"], item[1], f"press-{item[0]}"),
                    presses,
                )
            )
        assert len(set(run_ids)) == PRESSES  # each double click made one flow run
        with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
            body = {"deployments": {"id": {"any_": [deployment["id"]]}}}

            def all_finished() -> list[dict[str, Any]] | None:
                runs: list[dict[str, Any]] = http.post("flow_runs/filter", json=body).json()
                return runs if all(run["state_type"] in FINAL for run in runs) else None

            runs = eventually(all_finished, what="every run finished", timeout=420, interval=2)
        assert len(runs) == PRESSES
        assert sorted(run["state_type"] for run in runs) == ["COMPLETED"] * PRESSES
        jobs = sandbox.jobs()
        ids = sorted(job["metadata"][SUBMISSION_METADATA_KEY] for job in jobs)
        expected = sorted(f"press-{n}:{step}" for n in range(PRESSES) for step in ("scout", "full"))
        assert ids == expected  # 0 duplicate jobs, 0 lost submissions
        assert 1 <= sandbox.state()["in_flight"]["job_posts"]["max"] <= JOB_POST_LIMIT
    finally:
        stopped = studio("down", env=env)
        cluster = Cluster.for_home(home / "studio")
        if cluster.run_as:  # root's clusters live outside tmp_path
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
            cluster.log_file.unlink(missing_ok=True)
    assert stopped.returncode == 0, stopped.stderr
    pids = [state.get("server_pid", 0), *state.get("worker_pids", [])]
    assert not [pid for pid in pids if pid and pid_alive(pid)]
    assert not (home / "studio" / "state.json").exists()
