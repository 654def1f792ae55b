"""The studio stack end to end: Redis, PostgreSQL, Prefect's API in 2 processes, 4 workers.

``prefect-conductor studio up`` on loopback; ``studio status`` names Redis and both API
processes. First, fairness: with a 40-shot batch waiting, the next run the pool hands a worker is
an artist's Submit. Then 20 artists press Submit at once, each twice (a double click), through
the host's own trigger (``POST deployments/<id>/create_flow_run`` with the press's idempotency
key, retried on a lost answer); halfway through, one API process is killed (SIGKILL). Every press
must make exactly one flow run and each run one scout and one full job; the sandbox never serves
more job posts at once than the studio-wide limit. A concurrency slot taken before ``studio
restart`` is released after it (its lease is in Redis). ``studio down`` leaves nothing running.
Needs Debian's ``postgresql`` and ``redis-server`` packages (.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.cli.deployment_params import deployment_parameters
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.host_export.trigger import PrefectSettings, start_flow_run
from prefect_conductor.processes import pid_alive
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.studio.postgres import Cluster
from prefect_conductor.studio.stack import StudioState, api_process_pids
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


def press(api_url: str, parameters: dict[str, Any], key: str) -> str:
    """One Submit press, as the host sends it (retried on a lost answer); the flow run's id."""
    settings = PrefectSettings(api_url=api_url)
    return start_flow_run(parameters, idempotency_key=key, settings=settings, tags=["host:jobs"]).id


def lease_outlives_a_restart(api_url: str, env: dict[str, str]) -> None:
    """A slot taken with a lease before ``studio restart`` is released after it: the restarted
    API finds the lease in Redis (kept in an API process's memory, it would be gone, and the
    slot taken for good)."""
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
        made = http.post("v2/concurrency_limits/", json={"name": "restart-check", "limit": 1})
        assert made.status_code == 201, made.text
        taken = http.post(
            "v2/concurrency_limits/increment-with-lease",
            json={"names": ["restart-check"], "slots": 1, "lease_duration": 600},
        ).raise_for_status()
    restarted = studio("restart", env=env)
    assert restarted.returncode == 0, restarted.stderr
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
        assert http.get("v2/concurrency_limits/restart-check").json()["active_slots"] == 1
        body = {"lease_id": taken.json()["lease_id"]}
        http.post("v2/concurrency_limits/decrement-with-lease", json=body).raise_for_status()
        assert http.get("v2/concurrency_limits/restart-check").json()["active_slots"] == 0


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
@pytest.mark.timeout(900)
def test_twenty_artists_submit_through_the_redis_stack_without_duplicates(
    postgresql: Path, redis_server: Path, sandbox: SandboxHandle, tmp_path: Path
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
    api_pids: list[int] = []
    try:
        assert started.returncode == 0, started.stderr
        assert "PREFECT_API_URL=" in started.stdout
        state = json.loads((home / "studio" / "state.json").read_text())
        assert "password" not in json.dumps(state) and "postgresql" not in started.stdout
        assert "redis://" not in started.stdout
        api_url = state["api_url"]
        shown = studio("status", env=env).stdout
        assert "redis" in shown and shown.count("  api  ") == 2, shown
        api_pids = api_process_pids(StudioState(**state))
        assert len(api_pids) == 2, shown
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
        answered = 0
        lock = threading.Lock()

        def click(item: tuple[int, dict[str, Any]]) -> str:
            nonlocal answered
            run_id = press(api_url, item[1], f"press-{item[0]}")
            with lock:
                answered += 1
                if answered == PRESSES:  # halfway: one API process dies mid-storm
                    os.kill(api_pids[0], signal.SIGKILL)
            return run_id

        with ThreadPoolExecutor(max_workers=PRESSES) as pool:
            run_ids = list(pool.map(click, presses))
        assert len(set(run_ids)) == PRESSES  # each double click made one flow run
        deadline = time.monotonic() + 900
        while True:
            with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
                body = {"deployments": {"id": {"any_": [deployment["id"]]}}}
                runs = http.post("flow_runs/filter", json=body).json()
            if all(run["state_type"] in FINAL for run in runs) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert len(runs) == PRESSES
        assert sorted(run["state_type"] for run in runs) == ["COMPLETED"] * PRESSES
        jobs = sandbox.jobs()
        ids = sorted(job["metadata"][SUBMISSION_METADATA_KEY] for job in jobs)
        expected = sorted(f"press-{n}:{step}" for n in range(PRESSES) for step in ("scout", "full"))
        assert ids == expected  # 0 duplicate jobs, 0 lost submissions
        assert 1 <= sandbox.state()["in_flight"]["job_posts"]["max"] <= JOB_POST_LIMIT
        api_pids += api_process_pids(StudioState(**state))  # with the one that replaced the killed
        lease_outlives_a_restart(api_url, env)
        state = json.loads((home / "studio" / "state.json").read_text())
        api_pids += api_process_pids(StudioState(**state))
    finally:
        stopped = studio("down", env=env)
        cluster = Cluster.for_home(home / "studio")
        if cluster.run_as:  # root's clusters live outside tmp_path
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
            cluster.log_file.unlink(missing_ok=True)
    assert stopped.returncode == 0, stopped.stderr
    roles = ("server_pid", "services_pid", "redis_pid")
    pids = [*(state.get(role, 0) for role in roles), *state.get("worker_pids", []), *api_pids]
    assert not [pid for pid in pids if pid and pid_alive(pid)]
    assert not (home / "studio" / "state.json").exists()
