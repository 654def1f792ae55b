"""Re-rendering in a local run: only the failed or preempted tasks are posted again as a new job,
followed to their frames, and a frame that fails every attempt ends the run in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State

from prefect_conductor.conductor_cloud.transfers.job_outputs import TasksFailed
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import make_job
from tests.test_follow_local import FOLLOW, scene_on_disk

pytestmark = pytest.mark.usefixtures("prefect_backend")


def attempts_table(state: State[Any]) -> list[dict[str, Any]]:
    """The rows of the run's ``render-attempts`` table artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                key=ArtifactFilterKey(any_=["render-attempts"]),
            )
        )
    assert len(found) == 1
    data = found[0].data
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


def test_a_frame_failing_every_attempt_fails_the_run_in_one_line_naming_frames_and_jobs(
    conductor_env: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)
    conductor_env.config(fail_frames=[5])
    state: State[Any] = render_submit(  # type: ignore[assignment]
        job=make_job(rerender_attempts=1), scene=scene, options=FOLLOW, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(TasksFailed) as caught:
        state.result()
    jobs = conductor_env.jobs()
    assert [job["jid"] for job in jobs] == ["00001", "00002", "00003"]
    line = str(caught.value)
    assert "\n" not in line
    assert [row["job"] for row in attempts_table(state)] == ["00002", "00003"]
    assert line.startswith("frames 5-6 did not render in 2 attempts (jobs 00002, 00003;")
    rerender = jobs[2]
    assert [t["frames"] for t in rerender["tasks_data"]] == ["5-6"]
    assert rerender["tasks_data"][0] == jobs[1]["tasks_data"][1]
    assert rerender["metadata"]["prefect_conductor_rerender_of"] == "00002"
    assert rerender["metadata"]["prefect_conductor_rerender_attempt"] == "1"
    assert "task 000 of job 00003: " in caplog.text  # the last attempt's log tail


def test_a_frame_failing_once_is_rendered_again_and_the_run_completes_with_every_frame(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)
    conductor_env.config(fail_frames=[5], fail_attempts=1)
    state: State[Any] = render_submit(  # type: ignore[assignment]
        job=make_job(), scene=scene, options=FOLLOW, return_state=True
    )
    assert state.is_completed(), state.message
    outputs = state.result()["outputs"]
    assert outputs["files"] == 20
    assert {name: (c["expected"], c["found"]) for name, c in outputs["frames"].items()} == {
        "beauty": (10, 10),
        "shadow": (10, 10),
    }
    _scout, full, rerender = conductor_env.jobs()
    assert rerender["tasks_data"] == [full["tasks_data"][1]]
    assert rerender["preemptible"] is True  # a failure, not a preemption: the job's own choice
    rows = attempts_table(state)
    assert [(r["job"], r["frames"], r["outcome"]) for r in rows] == [
        (full["jid"], "1-2,5-6,9-10", "2 of 3 rendered; failed: 5-6"),
        (rerender["jid"], "5-6", "rendered"),
    ]
    assert all(r["instance_hours"] for r in rows)  # a local run's own looks timed every task


@pytest.mark.parametrize("on_demand", [True, False])
def test_a_preempted_task_is_rendered_again_on_demand_when_the_policy_says_so(
    conductor_env: SandboxHandle, tmp_path: Path, on_demand: bool
) -> None:
    """The job's one Conductor retry is preempted too; the re-render then asks for on-demand
    machines (and drops the preemption retries that only preemptible machines carry)."""
    scene = scene_on_disk(tmp_path, conductor_env)
    conductor_env.config(preempt_frames=[5], preempt_attempts=2)
    job = make_job(rerender_on_demand=on_demand)
    state: State[Any] = render_submit(  # type: ignore[assignment]
        job=job, scene=scene, options=FOLLOW, return_state=True
    )
    assert state.is_completed(), state.message
    _scout, full, rerender = conductor_env.jobs()
    assert full["preemptible"] is True
    assert rerender["tasks_data"] == [full["tasks_data"][1]]
    assert rerender["preemptible"] is not on_demand
    assert (rerender["autoretry_policy"] == {}) is on_demand
    assert attempts_table(state)[0]["outcome"] == "2 of 3 rendered; preempted: 5-6"


def test_a_preempted_task_conductor_took_up_again_is_waited_for_not_posted_twice(
    conductor_env: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fresh look before posting first shows the task taken up again (as if Conductor
    retried it meanwhile): the run follows the full job once more, then posts one re-render."""
    from prefect_conductor.tasks import rerender

    looks: list[int] = []
    real = rerender.still_to_rerender

    def first_look_taken_up_again(chosen: Any, fresh: Any) -> Any:
        looks.append(len(looks))
        return [] if len(looks) == 1 else real(chosen, fresh)

    monkeypatch.setattr(rerender, "still_to_rerender", first_look_taken_up_again)
    scene = scene_on_disk(tmp_path, conductor_env)
    conductor_env.config(preempt_frames=[5], preempt_attempts=2)
    state: State[Any] = render_submit(  # type: ignore[assignment]
        job=make_job(), scene=scene, options=FOLLOW, return_state=True
    )
    assert state.is_completed(), state.message
    assert looks == [0, 1]
    _scout, full, rerender_job = conductor_env.jobs()
    assert rerender_job["tasks_data"] == [full["tasks_data"][1]]
    assert [row["job"] for row in attempts_table(state)] == [full["jid"], rerender_job["jid"]]
