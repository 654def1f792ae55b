"""The render-submit flow on Prefect's local backend against the sandbox, end to end in-process."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.context import tags
from prefect.flow_runs import resume_flow_run
from prefect.states import State
from pydantic import SecretStr

from prefect_conductor.conductor_cloud.errors import ValidationFailed
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.tasks.submit import ScoutFailed
from tests.eventually import eventually
from tests.host_scenes import build_shot
from tests.host_standin.fixtures import standin_environment
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_backend")

SCENE = SceneSource(export_path=str(EXAMPLES / "scene_export.json"))
FAST = RunOptions(poll_seconds=0.05)


def example_job(**changes: Any) -> ConductorJob:
    from prefect_conductor.conductor_cloud.job.loaders import load_job

    return load_job(EXAMPLES / "job.yaml").model_copy(update=changes)


def run_state(
    job: ConductorJob, scene: SceneSource = SCENE, options: RunOptions = FAST, flow: Any = None
) -> State[Any]:
    """Run the flow in this process; its final state."""
    flow = flow or render_submit
    return cast("State[Any]", flow(job=job, scene=scene, options=options, return_state=True))


def run(
    job: ConductorJob, scene: SceneSource = SCENE, options: RunOptions = FAST
) -> dict[str, Any]:
    """Run the flow in this process; its result (a failed run raises the run's exception)."""
    return cast("dict[str, Any]", run_state(job, scene, options).result())


def run_id_of(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def frames_of(job: dict[str, Any]) -> list[str]:
    return [t["frames"] for t in job["tasks_data"]]


def job_posts(sandbox: SandboxHandle) -> int:
    """How many job POSTs reached the sandbox (a dropped answer still counts)."""
    return sum(
        1 for r in sandbox.state()["requests"] if r["method"] == "POST" and r["path"] == "/jobs/"
    )


def task_run_counts(flow_run_id: UUID) -> dict[str, int]:
    """How often each task of a flow run ran (its first attempt plus its retries)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
    return {run.name.rsplit("-", 1)[0]: run.run_count for run in runs}


def test_scouts_pass_then_the_full_job_goes(conductor_env: SandboxHandle) -> None:
    state = run_state(example_job())
    result = state.result()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id_of(state))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    assert {"project:default", "host:jobs", "scout:gated"} <= set(run.tags)
    by_key = {a.key: a for a in artifacts}
    assert {
        "frames-info",
        "frame-plan",
        "validation-report",
        "payload-preview",
        "upload-progress",
        "scout-job",
        "full-job",
    } <= set(by_key)
    assert by_key["upload-progress"].data == 100.0
    for step in ("scout", "full"):
        jid = result["jobs"][step]["jid"]
        assert f"({conductor_env.url}/job/{jid})" in str(by_key[f"{step}-job"].data)
        host = conductor_env.url.removeprefix("http://")  # the sandbox is not "the dashboard"
        assert by_key[f"{step}-job"].description == f"The {step} job's page on {host}"
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


def upstream_tasks(flow_run_id: UUID) -> dict[str, set[str]]:
    """Each task's name (without its suffix) -> the names of the tasks it takes input from."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
    names = {run.id: run.name.rsplit("-", 1)[0] for run in runs}
    return {
        names[run.id]: {
            names[ref.id]
            for refs in run.task_inputs.values()
            for ref in refs
            if getattr(ref, "id", None) in names
        }
        for run in runs
    }


def test_the_task_graph_is_the_pipeline_in_order(conductor_env: SandboxHandle) -> None:
    state = run_state(example_job())
    graph = upstream_tasks(run_id_of(state))
    assert "export-scene" in graph["fetch-catalog"]
    assert graph["validate"] == {"export-scene", "fetch-catalog"}
    assert "validate" in graph["resolve-packages"]
    assert "resolve-packages" in graph["chunk-frames"]
    assert "chunk-frames" in graph["upload-assets"]
    assert "upload-assets" in graph["scout-submit"]
    assert "scout-submit" in graph["wait-for-tasks"]
    assert "wait-for-tasks" in graph["job-finished"]
    assert "job-finished" in graph["full-submit"]


def test_the_payload_artifact_is_a_table_people_read(conductor_env: SandboxHandle) -> None:
    state = run_state(example_job())
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run_id_of(state)])
            )
        )
    text = str(next(a for a in artifacts if a.key == "payload-preview").data)
    assert "| path | files | size | md5 |" in text
    assert "sim.1-12#.abc` | 12 |" in text  # every cache frame the pattern matches, one row
    assert "st_mtime" not in text and "st_ino" not in text


def test_a_failed_scout_stops_the_rest(conductor_env: SandboxHandle) -> None:
    conductor_env.config(task_seconds=0.05, fail_frames=[8])
    with pytest.raises(ScoutFailed, match=r"frames 7-8; the remaining frames were not submitted"):
        run(example_job())
    assert len(conductor_env.jobs()) == 1


def test_a_scout_left_preempted_stops_the_rest_naming_it(conductor_env: SandboxHandle) -> None:
    conductor_env.config(task_seconds=0.05, preempt_frames=[8])
    with pytest.raises(
        ScoutFailed,
        match=r": 1 task\(s\) did not render \(1 preempted\), frames 7-8; the remaining",
    ):
        run(example_job())
    assert len(conductor_env.jobs()) == 1


def test_preview_submits_and_uploads_nothing(
    conductor_env: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The key comes from a Secret block named in the options, as on a shared worker.
    Secret(value=SecretStr(conductor_env.api_key)).save("conductor-flow-tests", overwrite=True)
    monkeypatch.delenv("CONDUCTOR_API_KEY")
    monkeypatch.delenv("CONDUCTOR_URL")
    options = FAST.model_copy(
        update={
            "preview": True,
            "conductor_url": conductor_env.url,
            "credentials_block": "conductor-flow-tests",
        }
    )
    result = run(example_job(), options=options)
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
    first = run(example_job(), options=options)
    uploads_after_first = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    second = run(example_job(), options=options)
    assert first["jobs"] == second["jobs"]
    assert len(conductor_env.jobs()) == 2
    uploads_after_second = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    assert uploads_after_second == uploads_after_first  # nothing uploaded again


def test_a_post_that_may_have_landed_and_cannot_be_looked_up_fails_without_posting_again(
    conductor_env: SandboxHandle,
) -> None:
    # The scout POST is stored but its answer is lost, and the lookup after it is refused: the
    # client cannot tell, so the run fails naming the job's tagged title (docs/protocol.md) and
    # neither the client nor a Prefect retry posts a second job.
    conductor_env.faults(
        {"method": "POST", "path": "/jobs/", "action": "drop_after"},
        {"method": "GET", "path": "/api/v1/jobs", "action": "status", "status": 400},
    )
    state = run_state(example_job())
    assert state.is_failed()
    message = str(state.message)
    assert "job 'shot010 lighting v012 [pc-" in message and "new submission key" in message
    assert len(conductor_env.jobs()) == 1
    assert job_posts(conductor_env) == 1
    assert task_run_counts(run_id_of(state))["scout-submit"] == 1


def test_a_retried_flow_run_posts_each_job_once(conductor_env: SandboxHandle) -> None:
    # The first attempt fails after the scout job was posted (its status read is refused); the
    # flow run's retry runs every step again under the same flow run id.
    conductor_env.faults(
        {"method": "GET", "path": "/api/v1/tasks", "action": "status", "status": 400}
    )
    retried = render_submit.with_options(retries=1, retry_delay_seconds=0)
    state = run_state(example_job(), flow=retried)
    assert state.is_completed()
    assert [frames_of(j) for j in conductor_env.jobs()] == [["3-4", "7-8"], ["1-2", "5-6", "9-10"]]
    assert job_posts(conductor_env) == 2
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run_id_of(state)).run_count == 2


@pytest.mark.parametrize(
    ("changes", "scout_frames"),
    [({"use_scout_frames": False}, ""), ({"scout_mode": "native"}, "3,8")],
    ids=["off", "native"],
)
def test_native_or_no_scouting_is_one_job_and_no_wait(
    conductor_env: SandboxHandle, changes: dict[str, Any], scout_frames: str
) -> None:
    conductor_env.config(task_seconds=30)  # the run must not wait for any task
    state = run_state(example_job(**changes))
    [job] = conductor_env.jobs()
    assert frames_of(job) == ["1-2", "3-4", "5-6", "7-8", "9-10"]
    assert job["scout_frames"] == scout_frames
    assert "wait-for-tasks" not in task_run_counts(run_id_of(state))


def test_validation_errors_fail_at_once_and_submit_nothing(conductor_env: SandboxHandle) -> None:
    with pytest.raises(ValidationFailed, match="^project: unknown project 'nope'"):
        run(example_job(project="nope"))
    assert conductor_env.jobs() == []


def _run_in_thread(job: ConductorJob) -> tuple[threading.Thread, dict[str, Any], str]:
    """Run the flow in a thread, tagged so this test finds its own run; the tag is returned."""
    outcome: dict[str, Any] = {}
    tag = f"test-run-{uuid4()}"

    def target() -> None:
        with tags(tag):
            outcome["state"] = run_state(job)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome, tag


def _paused_run_id(tag: str) -> Any:
    """The id of this test's flow run (tagged ``tag``) once it is paused."""
    run_filter = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[tag]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
    )
    with get_client(sync_client=True) as client:
        runs = eventually(
            lambda: client.read_flow_runs(flow_run_filter=run_filter),
            what="the flow run paused for approval",
            timeout=60,
            interval=0.2,
        )
    return runs[0].id


@pytest.mark.parametrize(("approve", "jobs"), [(True, 2), (False, 1)])
def test_manual_approval_resumes_or_rejects(
    conductor_env: SandboxHandle, approve: bool, jobs: int
) -> None:
    thread, outcome, tag = _run_in_thread(example_job(approval="manual"))
    run_id = _paused_run_id(tag)
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


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_manual_approval_nobody_answers_ends_the_run_cleanly(
    conductor_env: SandboxHandle,
) -> None:
    # A timeout of about a second (model_copy skips the field's one-minute floor).
    job = example_job(approval="manual", approval_timeout_minutes=0.02)
    state = run_state(job)
    assert state.is_cancelled()
    assert "no approval within" in (state.message or "")
    assert len(conductor_env.jobs()) == 1


def test_a_saved_project_is_exported_by_the_host_batch_command(
    conductor_env: SandboxHandle, host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shot = build_shot(host, tmp_path / "shot")
    before = shot.project.read_bytes()
    monkeypatch.setenv("PYTHONPATH", standin_environment()["PYTHONPATH"])
    source = SceneSource(
        project_path=str(shot.project),
        host_command=[sys.executable, "-m", "prefect_conductor.host_export.batch_export"],
    )
    run(example_job(use_scout_frames=False), scene=source)
    assert shot.project.read_bytes() == before  # the artist's file is never written
    [job] = conductor_env.jobs()
    assert frames_of(job) == ["1-2", "3-4", "5-6", "7-8", "9-10"]
    package = next(f["destination"] for f in job["upload_files"] if ".cio." in f["destination"])
    assert Path(package).name == "shot010.shot010_lighting_v012.cio.project"
    uploaded = {Path(f["destination"]).name for f in job["upload_files"]}
    assert {"wood.1001.tx", "wood.1002.tx", "sim.0001.abc"} <= uploaded
