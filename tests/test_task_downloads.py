"""Frames as each task finishes: the follow loop downloads a task's files while later tasks are
still open, with one task listing per look; ``download --follow`` prints a line per task.

A job with native scout frames stands in for "later tasks still rendering": its scout task
renders, the others hold until released, so what a test sees at the first task's download does
not depend on timing. Everything talks to the sandbox over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefect_conductor.cli.main import app
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    JobNotFinished,
    TaskState,
    fetch_outputs,
    task_states,
)
from prefect_conductor.conductor_cloud.transfers.task_downloads import TaskDownloaded
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.test_job_outputs import EXPECTED, on_disk, submit

POLICY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)


@pytest.fixture
def conductor(conductor_env: SandboxHandle, tmp_path: Path) -> Iterator[ConductorClient]:
    with ConductorClient(token_cache_dir=tmp_path / "tokens", policy=POLICY) as made:
        yield made


@pytest.fixture
def observer(conductor_env: SandboxHandle, tmp_path: Path) -> Iterator[ConductorClient]:
    """A second client, for the test's own looks from inside a callback."""
    with ConductorClient(token_cache_dir=tmp_path / "tokens-2", policy=POLICY) as made:
        yield made


def scouted_job(conductor: ConductorClient, sandbox: SandboxHandle) -> str:
    """The three-task job with frame 1 as its scout: task 000 renders, 001 and 002 hold."""
    return submit(conductor, sandbox, scout_frames="1")


def test_the_first_tasks_frames_land_while_later_tasks_are_still_open(
    conductor: ConductorClient,
    observer: ConductorClient,
    conductor_env: SandboxHandle,
    tmp_path: Path,
) -> None:
    jid = scouted_job(conductor, conductor_env)
    out = tmp_path / "out"
    landed: list[TaskDownloaded] = []
    at_first: dict[str, TaskStatus] = {}
    on_disk_at_first: list[str] = []

    def arrived(done: TaskDownloaded) -> None:
        if not landed:
            at_first.update({s.tid: s.status for s in task_states(observer, jid)})
            on_disk_at_first.extend(sorted(on_disk(out / jid)))
            conductor_env.release(jid)  # the user presses "continue": the rest render
        landed.append(done)

    clock = TaskClock()
    looks: list[list[TaskState]] = []
    result = fetch_outputs(
        conductor,
        jid,
        out,
        wait_seconds=60,
        poll_seconds=0.05,
        on_task=arrived,
        on_poll=looks.append,
        clock=clock,
    )
    requests = conductor_env.state()["requests"]
    # When task 000's files were on disk, the other tasks had not finished.
    assert at_first["000"].succeeded
    assert not at_first["001"].finished and not at_first["002"].finished
    assert on_disk_at_first == [p for p in EXPECTED if ".0001." in p or ".0002." in p]
    first = landed[0]
    assert (first.tid, first.frames, first.folder) == ("000", "1-2", out / jid)
    assert sorted(first.files) == on_disk_at_first
    assert first.bytes == sum((out / jid / f).stat().st_size for f in first.files)
    # Then every task, once each, reported downloaded; every file verified.
    assert sorted(d.tid for d in landed) == ["000", "001", "002"]
    assert sorted(result.download.reported) == ["000", "001", "002"]
    assert sorted(on_disk(out / jid)) == EXPECTED
    assert {s.status for s in task_states(conductor, jid)} == {TaskStatus.DOWNLOADED}
    assert sorted(clock.durations()) == ["000", "001", "002"]

    # One task listing per look, however many tasks were open; the downloads listing only on
    # looks that saw a task newly succeeded.
    listings = [r for r in requests if r["method"] == "GET" and r["path"] == "/api/v1/tasks"]
    pages = [r for r in requests if r["method"] == "POST" and r["path"] == f"/jobs/{jid}/downloads"]
    assert len(listings) == len(looks) + 1  # and the test's own look from the callback
    newly: list[set[str]] = []
    seen: set[str] = set()
    for look in looks:
        now = {s.tid for s in look if s.status.succeeded} - seen
        seen |= now
        if now:
            newly.append(now)
    assert len(pages) == len(newly) >= 2


def test_the_downloads_listing_holds_only_the_succeeded_tasks_asked_for(
    conductor: ConductorClient, conductor_env: SandboxHandle
) -> None:
    jid = scouted_job(conductor, conductor_env)
    eventually(
        lambda: task_states(conductor, jid)[0].status.succeeded, what="the scout task rendered"
    )
    asked = [t.task_id for page in conductor.download_pages(jid, tids=["000", "001"]) for t in page]
    assert asked == ["000"]  # 001 holds: not listed until it has succeeded
    assert [t.task_id for page in conductor.download_pages(jid, tids=["2"]) for t in page] == []


def test_download_follow_prints_a_line_per_task_then_the_summary(
    conductor: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(conductor, conductor_env)
    out = tmp_path / "out"
    args = ["download", jid, "--output", str(out), "--follow", "--poll-seconds", "0.05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    per_task = [line for line in lines if line.startswith(f"job {jid} task ")]
    assert sorted(per_task) == [
        task_line(jid, "000", "1-2", 4, out),
        task_line(jid, "001", "3-4", 4, out),
        task_line(jid, "002", "5", 2, out),
    ]
    assert lines[-1].startswith(f"job {jid}: 10 files")
    assert sorted(on_disk(out / jid)) == EXPECTED


def test_download_follow_ends_not_finished_in_time_with_the_finished_tasks_on_disk(
    conductor: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = scouted_job(conductor, conductor_env)
    eventually(
        lambda: task_states(conductor, jid)[0].status.succeeded, what="the scout task rendered"
    )
    out = tmp_path / "out"
    args = ["download", jid, "--output", str(out), "--follow", "--wait", "0.3"]
    result = CliRunner().invoke(app, [*args, "--poll-seconds", "0.05"])
    assert isinstance(result.exception, JobNotFinished), result.output
    assert str(result.exception).startswith(f"job {jid}: 2 of 3 tasks not finished (holding)")
    assert [line for line in result.stdout.splitlines() if " task " in line] == [
        task_line(jid, "000", "1-2", 4, out)
    ]


def task_line(jid: str, tid: str, frames: str, files: int, out: Path) -> str:
    """The line ``download --follow`` prints for a task, its bytes read off the disk."""
    first, _, last = frames.partition("-")
    wanted = range(int(first), int(last or first) + 1)
    folder = out / jid
    size = sum(
        path.stat().st_size
        for path in folder.rglob("*.exr")
        if int(path.name.split(".")[1]) in wanted
    )
    return f"job {jid} task {tid} (frames {frames}): {files} files, {size} bytes -> {folder}"


def test_the_interval_grows_while_nothing_changes_and_starts_over_when_a_task_does() -> None:
    from typing import Any, cast

    from prefect_conductor.conductor_cloud.transfers.job_outputs import wait_for_tasks

    def task(status: str) -> dict[str, Any]:
        return {"taskLabel": "000", "frames": "1", "status": status}

    class Scripted:
        """A task listing that says what the script says, one look at a time."""

        def __init__(self, *statuses: str) -> None:
            self.statuses = list(statuses)

        def get_tasks(self, jid: str) -> list[dict[str, Any]]:
            return [task(self.statuses.pop(0))]

    naps: list[float] = []
    listing = Scripted("pending", "pending", "pending", "running", "running", "success")
    states = wait_for_tasks(
        cast(Any, listing), "00001", poll_seconds=2, timeout_seconds=600, sleep=naps.append
    )
    assert [s.status for s in states] == [TaskStatus.SUCCESS]
    assert naps == [2, 3, 4.5, 2, 3]
