"""The render-submit flow on Prefect's local backend against the sandbox, end to end in-process."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from prefect_conductor.conductor_cloud.errors import ValidationFailed
from prefect_conductor.conductor_cloud.job import ConductorJob
from prefect_conductor.conductor_cloud.request import RunOptions, SceneSource
from prefect_conductor.conductor_cloud.sandbox.handle import SandboxHandle
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.tasks.submit import ScoutFailed
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_backend")

SCENE = SceneSource(export_path=str(EXAMPLES / "scene_export.json"))
FAST = RunOptions(poll_seconds=0.05)


def example_job(**changes: Any) -> ConductorJob:
    from prefect_conductor.conductor_cloud.loaders import load_job

    return load_job(EXAMPLES / "job.yaml").model_copy(update=changes)


def frames_of(job: dict[str, Any]) -> list[str]:
    return [t["frames"] for t in job["tasks_data"]]


def test_scouts_pass_then_the_full_job_goes(conductor_env: SandboxHandle) -> None:
    state = render_submit(job=example_job(), scene=SCENE, options=FAST, return_state=True)
    result = state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert {"project:default", "host:jobs", "scout:gated"} <= set(run.tags)
    assert run.name == "shot010 lighting v012 1-10"
    jobs = conductor_env.jobs()
    assert [frames_of(j) for j in jobs] == [["3-4", "7-8"], ["1-2", "5-6", "9-10"]]
    assert jobs[0]["submitted_at"] < jobs[1]["submitted_at"]
    assert result["jobs"]["scout"]["jid"] == jobs[0]["jid"]
    assert result["info"] == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    assert all(
        j["metadata"]["prefect_conductor_submission"].endswith(s)
        for j, s in zip(jobs, ("scout", "full"), strict=True)
    )


def test_a_failed_scout_stops_the_rest(conductor_env: SandboxHandle) -> None:
    conductor_env.config(task_seconds=0.05, fail_frames=[8])
    with pytest.raises(ScoutFailed, match=r"frames 7-8; the remaining frames were not submitted"):
        render_submit(job=example_job(), scene=SCENE, options=FAST)
    assert len(conductor_env.jobs()) == 1


def test_preview_submits_and_uploads_nothing(conductor_env: SandboxHandle) -> None:
    result = render_submit(
        job=example_job(), scene=SCENE, options=FAST.model_copy(update={"preview": True})
    )
    assert result["preview"] is True
    assert list(result["payloads"]) == ["scout", "full"]
    state = conductor_env.state()
    assert state["jobs"] == [] and state["uploads"] == {}
    assert not [
        r
        for r in state["requests"]
        if r["method"] in ("PUT", "POST") and r["path"] != "/api/oauth_jwt"
    ]


def test_the_same_submission_key_never_posts_twice(conductor_env: SandboxHandle) -> None:
    options = FAST.model_copy(update={"submission_key": "host-click-42"})
    first = render_submit(job=example_job(), scene=SCENE, options=options)
    uploads_after_first = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    second = render_submit(job=example_job(), scene=SCENE, options=options)
    assert first["jobs"] == second["jobs"]
    assert len(conductor_env.jobs()) == 2
    uploads_after_second = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    assert uploads_after_second == uploads_after_first  # nothing uploaded again


def test_no_scouting_is_one_job(conductor_env: SandboxHandle) -> None:
    render_submit(job=example_job(use_scout_frames=False), scene=SCENE, options=FAST)
    assert [frames_of(j) for j in conductor_env.jobs()] == [["1-2", "3-4", "5-6", "7-8", "9-10"]]


def test_validation_errors_fail_at_once_and_submit_nothing(conductor_env: SandboxHandle) -> None:
    with pytest.raises(ValidationFailed, match="^project: unknown project 'nope'"):
        render_submit(job=example_job(project="nope"), scene=SCENE, options=FAST)
    assert conductor_env.jobs() == []


def _run_in_thread(job: ConductorJob) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        outcome["state"] = render_submit(job=job, scene=SCENE, options=FAST, return_state=True)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _paused_run_id(timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
                )
            )
            if runs:
                return runs[0].id
            time.sleep(0.2)
    raise AssertionError("the flow run never paused for approval")


@pytest.mark.parametrize(("approve", "jobs"), [(True, 2), (False, 1)])
def test_manual_approval_resumes_or_rejects(
    conductor_env: SandboxHandle, approve: bool, jobs: int
) -> None:
    thread, outcome = _run_in_thread(example_job(approval="manual"))
    run_id = _paused_run_id()
    assert len(conductor_env.jobs()) == 1  # only the scout job while waiting
    resume_flow_run(run_id, run_input={"approve": approve, "reason": "the key light is too hot"})
    thread.join(timeout=60)
    state = outcome["state"]
    assert len(conductor_env.jobs()) == jobs
    if approve:
        assert state.is_completed()
    else:
        assert state.is_cancelled()
        assert "rejected: the key light is too hot" in (state.message or "")


def test_project_path_source_runs_the_host_exporter(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    import json
    import shutil
    import sys

    project = tmp_path / "shot.project"
    project.write_text("artist project")
    before = project.read_bytes()
    exporter = tmp_path / "fake_host.py"
    exporter.write_text(
        "import json, shutil, sys, pathlib\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "out = pathlib.Path(args['--output'])\n"
        f"data = json.loads(pathlib.Path({str(EXAMPLES / 'scene_export.json')!r}).read_text())\n"
        f"root = {str(EXAMPLES)!r}\n"
        "data['project_path'] = args['--project']\n"
        "data['render_package'] = root + '/' + data['render_package']\n"
        "data['dependencies'] = [root + '/' + d for d in data['dependencies']]\n"
        "for image in data['images']: image['save_as'] = root + '/' + image['save_as']\n"
        "(out / 'scene_export.json').write_text(json.dumps(data))\n"
    )
    source = SceneSource(project_path=str(project), host_command=[sys.executable, str(exporter)])
    render_submit(job=example_job(use_scout_frames=False), scene=source, options=FAST)
    assert project.read_bytes() == before  # the artist's file is never written
    assert len(conductor_env.jobs()) == 1
    del json, shutil
