"""The cost estimate against the sandbox's own record of task times, and the budget gate end to
end: a deployed run over budget waits Suspended for approval with no worker process, posts the
full job once when approved through the API and ends Cancelled when refused; a local ``submit``
over budget stops after the scouts with one line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from prefect_conductor.conductor_cloud.cost.estimate import Estimate
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.processes import descendants
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.tasks.approve import APPROVAL_TAG, approval_key
from tests.eventually import eventually
from tests.prefect_server import deployed_worker, start_deployment_run, watch_once
from tests.scenes import EXAMPLES, make_job, make_scene
from tests.test_waiting import events, read_run

EXPENSIVE = {"n1-standard-8": {"preemptible": 1_000_000.0, "on_demand": 3_000_000.0}}
"""Prices that put any scout-timed job of the sample far over a budget of 1."""


def task_run_seconds(sandbox: SandboxHandle, jid: int) -> list[float] | None:
    """How long each task of job ``jid`` ran on the sandbox's stand-in nodes, by its own record
    (None until every task has finished)."""
    path = sandbox.data_dir / "sandbox.sqlite"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT run_started, run_ended FROM tasks WHERE jid = ? ORDER BY tid", (jid,)
        ).fetchall()
    if not rows or any(end is None for _, end in rows):
        return None
    return [end - start for start, end in rows]


@pytest.mark.usefixtures("prefect_backend")
def test_the_full_job_estimate_is_within_20_percent_of_what_it_took(
    conductor_env: SandboxHandle,
) -> None:
    from prefect_conductor.flows.render_submit import render_submit

    # Tasks wait a second before they run, so the look right after the POST sees them pending.
    conductor_env.config(frame_seconds=1.0, task_seconds=1)
    options = RunOptions(poll_seconds=0.2, follow="no")
    result = render_submit(
        job=make_job().model_copy(update={"title": "shot010 lighting estimate"}),
        scene={"export_path": str(EXAMPLES / "scene_export.json")},
        options=options,
    )
    estimate = Estimate.from_dict(result["estimate"])
    assert estimate.instance_hours is not None and estimate.tasks == 3
    full = int(result["jobs"]["full"]["jid"])
    took = eventually(
        lambda: task_run_seconds(conductor_env, full),
        what="the full job's tasks finished",
        timeout=120,
        interval=0.5,
    )
    actual_hours = sum(took) / 3600.0
    assert estimate.instance_hours == pytest.approx(actual_hours, rel=0.2), (estimate, took)
    assert estimate.resolution_seconds is not None and estimate.resolution_seconds < 1.0


def processes_awaiting_approval(api: httpx.Client, run_id: str, worker: int) -> list[int] | None:
    """The worker's child processes once the run suspended for approval has let its process go
    (an empty list), or None when the run left Suspended before that could be seen."""

    def settled() -> tuple[list[int] | None] | None:
        again = read_run(api, run_id)
        if again is None:  # a busy server: ask again
            return None
        if again["state"]["name"] != "Suspended":
            return (None,)
        assert APPROVAL_TAG in again["tags"] and "conductor-waiting" not in again["tags"]
        return None if descendants(worker) else ([],)

    return eventually(settled, what="no process held while awaiting approval", timeout=45)[0]


def set_variable(server: str, name: str, value: Any) -> None:
    with httpx.Client(base_url=server, timeout=30) as api:
        api.delete(f"/variables/name/{name}")
        assert api.post("/variables/", json={"name": name, "value": value}).status_code == 201


@pytest.fixture
def worker(prefect_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[int]:
    """One process worker on the deployed pool; yields its pid."""
    env = {"CONDUCTOR_URL": sandbox.url, "CONDUCTOR_API_KEY": sandbox.api_key}
    with deployed_worker(prefect_server, tmp_path, env) as process:
        yield process.pid


@pytest.mark.e2e
@pytest.mark.timeout(600)
@pytest.mark.parametrize("approve", [True, False], ids=["approved", "refused"])
def test_a_deployed_run_over_budget_waits_suspended_for_a_person_s_answer(
    prefect_server: str, conductor_env: SandboxHandle, worker: int, tmp_path: Path, approve: bool
) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    set_variable(prefect_server, "conductor-prices", EXPENSIVE)
    scene_file = tmp_path / "shot" / "scene_export.json"
    scene_file.parent.mkdir(parents=True)
    scene_file.write_text(make_scene(scene_file.parent).model_dump_json())
    conductor_env.config(task_seconds=1, frame_seconds=0.5)
    parameters = {
        "job": make_job(budget=1).model_dump(mode="json"),
        "scene": {"export_path": str(scene_file)},
        "options": {"poll_seconds": 1, "follow": "no"},
    }
    seen: dict[str, Any] = {"approvals": 0, "held": []}
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        run = start_deployment_run(api, "render-submit/submit-to-conductor", parameters)

        def final_state() -> dict[str, Any] | None:
            current = read_run(api, run["id"])
            if current is None:
                return None
            if current["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return dict(current["state"])
            if current["state"]["name"] != "Suspended":
                return None
            if APPROVAL_TAG not in current["tags"]:
                watch_once(prefect_server)  # waiting on the scout job
                return None
            held = processes_awaiting_approval(api, run["id"], worker)
            if held is None:
                return None
            seen["held"].append(held)
            seen["jobs_while_waiting"] = len(conductor_env.jobs())
            scout = f"{int(conductor_env.jobs()[0]['jid']):05d}"
            form = api.get(
                f"/flow_runs/{run['id']}/input/suspended-{approval_key(scout)}-description"
            )
            seen["description"] = form.json() if form.status_code == 200 else form.text
            seen["approvals"] += 1
            with temporary_settings({PREFECT_API_URL: prefect_server}):
                resume_flow_run(run["id"], run_input={"approve": approve, "reason": "too dear"})
            return None

        try:
            state = eventually(final_state, what="the flow run finished", timeout=400, interval=1)
        finally:  # a later test on this server counts the deployment's runs
            api.delete(f"/flow_runs/{run['id']}")
    log = (tmp_path / "worker.log").read_text()[-3000:]
    assert seen["approvals"] == 1 and seen["held"] == [[]]
    if not approve:
        assert state["type"] == "CANCELLED", (state, log)
        assert state["message"].startswith("rejected: too dear; the remaining frames")
        assert len(conductor_env.jobs()) == 1
        return
    assert state["type"] == "COMPLETED", (state, log)
    assert seen["jobs_while_waiting"] == 1  # the scout job only, while the approval waited
    assert "waits for approval" in str(seen["description"])
    assert "over the budget 1.00" in str(seen["description"]), seen["description"]
    assert "Full job estimate" in str(seen["description"])
    jobs = conductor_env.jobs()
    assert [[t["frames"] for t in j["tasks_data"]] for j in jobs] == [
        ["3-4", "7-8"],
        ["1-2", "5-6", "9-10"],
    ]
    posts = [r for r in conductor_env.state()["requests"] if r["method"] == "POST"]
    assert len([r for r in posts if r["path"].rstrip("/").endswith("jobs")]) == 2
    scout = f"{int(jobs[0]['jid']):05d}"
    finished = events(
        prefect_server, "conductor.scouts.finished", scout, f"prefect.flow-run.{run['id']}"
    )
    assert len(finished) == 1 and "estimate" in finished[0]["payload"]
    assert finished[0]["payload"]["estimate"]["tasks"] == 3


@pytest.mark.usefixtures("cli_subprocess")
def test_a_local_submit_over_budget_ends_after_the_scouts_with_one_line(
    prefect_server: str, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    set_variable(prefect_server, "conductor-prices", EXPENSIVE)
    conductor_env.config(frame_seconds=0.5)
    job = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump({**job, "budget": 1}))
    command = [
        *(sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"),
        *("submit", str(job_file), "--scene", str(EXAMPLES / "scene_export.json")),
        *("--submission-key", f"over-{os.getpid()}-{tmp_path.name}", "--poll-seconds", "0.2"),
    ]
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home"),
        "CONDUCTOR_URL": conductor_env.url,
        "CONDUCTOR_API_KEY": conductor_env.api_key,
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 6, done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if line.startswith(("stopped:", "error:"))]
    assert line.startswith("stopped: the full job needs approval (estimated cost ")
    assert "over the budget 1.00" in line
    assert f"submit {job_file} --submission-key over-" in line and line.endswith("--approve")
    assert "Traceback" not in done.stderr
    assert len(conductor_env.jobs()) == 1
    assert "scout job 00001" in done.stdout
