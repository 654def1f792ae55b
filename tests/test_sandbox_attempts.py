"""The sandbox's misbehaving farm over plain HTTP: frames that fail on their first attempts only,
nodes taken away mid-render with Conductor's preemption retries (and what a task left preempted
means to a wait and its one line), and stand-in time that follows the frames and tiles a task
renders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.api.status import TaskStatus, not_rendered_line
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    TasksFailed,
    raise_for_failed_tasks,
    wait_for_tasks,
)
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.node.runner import tile_of
from prefect_conductor.sandbox.store import Store, validate_settings
from prefect_conductor.tasks.follow import counts
from tests.eventually import eventually
from tests.test_sandbox import cnode_job, job_of, signed_in, task_statuses


@pytest.fixture
def http(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    with signed_in(sandbox.url, sandbox.api_key) as client:
        yield client


def submit(http: httpx.Client, job: dict[str, object], **changes: object) -> str:
    """Post ``job`` (a ``cnode_job``: its package is uploaded when the body is made)."""
    response = http.post("/jobs/", json={**job, **changes})
    assert response.status_code == 201, response.text
    return str(response.json()["jobid"])


def settled(http: httpx.Client, jid: str, status: str) -> None:
    eventually(lambda: job_of(http, jid)["status"] == status, what=f"job {jid} {status}")


def log_of(http: httpx.Client, jid: str, tid: str) -> list[str]:
    answer = http.get("/get_log_file", params={"job": jid, "task": tid, "num_lines[]": 0})
    lines: list[str] = answer.json()["logs"][0]["log"]
    return lines


def sandbox_tasks(sandbox: SandboxHandle, jid: str) -> list[dict[str, Any]]:
    return [t for t in sandbox.state()["tasks"] if t["jid"] == jid]


def test_attempt_settings_are_checked() -> None:
    assert validate_settings(
        {"fail_attempts": 1, "preempt_frames": [5, 3, 5], "preempt_attempts": 0}
    ) == {"fail_attempts": 1, "preempt_frames": [3, 5], "preempt_attempts": 0}
    for bad, said in (
        ({"fail_attempts": -1}, "fail_attempts must be a whole number >= 0"),
        ({"preempt_attempts": 1.5}, "preempt_attempts must be a whole number >= 0"),
        ({"preempt_frames": "5"}, "preempt_frames must be a list of frame numbers"),
    ):
        with pytest.raises(ValueError, match=said):
            validate_settings(bad)


def test_attempts_are_counted_per_frame_and_tile_kept_over_a_restart_and_cleared_by_reset(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s.sqlite")
    assert store.count_attempts([4, 5], 0) == {4: 1, 5: 1}
    assert store.count_attempts([5], 2) == {5: 1}  # tile 2 of frame 5: its own first attempt
    store.close()
    store = Store(tmp_path / "s.sqlite")
    assert store.count_attempts([5, 5], 0) == {5: 2}
    store.reset()
    assert store.count_attempts([5], 0) == {5: 1}
    store.close()
    assert (tile_of("cnode p -tile_rendering 4 2 -x"), tile_of("cnode -tile_rendering 1 1")) == (
        2,
        0,
    )
    assert tile_of("cnode p -image_frames_list 1:2") == 0


def test_a_frame_fails_only_on_its_first_attempts_counted_across_jobs_until_reset(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(task_seconds=0.05, fail_frames=[4], fail_attempts=1)
    job = cnode_job(http)
    first = submit(http, job)
    settled(http, first, "failed")
    assert task_statuses(http, first) == ["success", "failed"]
    second = submit(http, job)  # frame 4's second attempt, in a later job
    settled(http, second, "success")
    assert {(a["frame"], a["count"]) for a in sandbox.state()["attempts"]} == {
        (1, 2),
        (2, 2),
        (3, 2),
        (4, 2),
    }
    sandbox.reset()
    assert sandbox.state()["attempts"] == []
    sandbox.config(task_seconds=0.05, fail_frames=[4], fail_attempts=1)
    again = submit(http, cnode_job(http))  # the reset forgot the package too
    settled(http, again, "failed")  # a first attempt again


def test_a_preempted_task_is_retried_by_the_jobs_autoretry_policy_then_stays_preempted(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(task_seconds=0.05, preempt_frames=[3], preempt_attempts=1)
    job = cnode_job(http, autoretry_policy={"preempted": {"max_retries": 1}}, preemptible=True)
    retried = submit(http, job)
    settled(http, retried, "success")
    assert task_statuses(http, retried) == ["success", "success"]
    log = log_of(http, retried, "001")
    assert "cnode: frame 3: the instance is being preempted" in log
    assert "sandbox: the instance was preempted" in log
    assert log[-1] == "sandbox: exit code 0"
    assert [t["preemptions"] for t in sandbox_tasks(sandbox, retried)] == [0, 1]
    assert job_of(http, retried)["statusDetails"] == ""

    # Every attempt preempted: one retry, then the task stays preempted and so does the job.
    sandbox.config(preempt_attempts=0)
    spent = submit(http, job)
    settled(http, spent, "preempted")
    assert task_statuses(http, spent) == ["success", "preempted"]
    assert job_of(http, spent)["statusDetails"] == "Instance was preempted"
    assert [t["preemptions"] for t in sandbox_tasks(sandbox, spent)] == [0, 2]
    log = log_of(http, spent, "001")
    assert log.count("sandbox: the instance was preempted") == 2
    assert "sandbox: exit code 0" not in log

    # Without a policy a preemption is final at once.
    bare = submit(http, job, autoretry_policy={}, preemptible=False)
    settled(http, bare, "preempted")
    assert [t["preemptions"] for t in sandbox_tasks(sandbox, bare)] == [0, 1]


def test_a_task_takes_frames_times_frame_seconds_over_its_tiles(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(task_seconds=0.05, frame_seconds=0.4)
    body = cnode_job(http)
    tasks = body["tasks_data"]
    assert isinstance(tasks, list)
    tasks[1]["command"] += " -tile_rendering 4 2"
    jid = str(http.post("/jobs/", json=body).json()["jobid"])
    settled(http, jid, "success")
    assert "cnode: sleeping 0.4 s per frame (1 tile(s) per frame)" in log_of(http, jid, "000")
    assert "cnode: sleeping 0.1 s per frame (4 tile(s) per frame)" in log_of(http, jid, "001")
    whole, tile = sandbox_tasks(sandbox, jid)
    # Two frames each: at least 2 x 0.4 s and 2 x 0.1 s on the node (the sleeps; no upper bound).
    assert whole["run_ended"] - whole["run_started"] >= 0.8
    assert tile["run_ended"] - tile["run_started"] >= 0.2
    assert {(a["frame"], a["tile"]) for a in sandbox.state()["attempts"]} == {
        (1, 0),
        (2, 0),
        (3, 2),
        (4, 2),
    }


def test_a_task_left_preempted_settles_the_wait_and_is_named_as_not_rendered(
    conductor_env: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    conductor_env.config(task_seconds=0.05, preempt_frames=[3])
    jid = submit(http, cnode_job(http))
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)
    with ConductorClient(token_cache_dir=tmp_path / "tokens", policy=policy) as client:
        states = wait_for_tasks(client, jid, poll_seconds=0.05, timeout_seconds=60)
        assert [str(s.status) for s in states] == ["success", "preempted"]
        assert counts(states) == {"success": 1, "failed": 0, "preempted": 1, "total": 2}
        with pytest.raises(TasksFailed) as raised:
            raise_for_failed_tasks(client, jid, states)
    said = f"job {jid}: 1 of 2 tasks did not render: 001 preempted (frames 3-4)"
    assert str(raised.value) == said
    assert not_rendered_line(s.status for s in states) == "1 task(s) did not render (1 preempted)"


def test_the_not_rendered_line_counts_killed_as_failed_and_names_preempted() -> None:
    words = [TaskStatus.FAILED, TaskStatus.KILLED, TaskStatus.PREEMPTED, TaskStatus.SUCCESS]
    assert not_rendered_line(words) == "3 task(s) did not render (2 failed, 1 preempted)"
