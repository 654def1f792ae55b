"""The watcher's reading of Prefect runs and Conductor's job listing, the resume cache key, and
its life: started by a suspending run, passing while runs wait, handing over as it ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import TaskRunContext
from prefect.states import Completed, Paused, Scheduled, Suspended

from prefect_conductor.flows.watch_jobs import _waiting, finished_jobs, watch_jobs
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.tasks.follow import JID_TAG_PREFIX, WAITING_TAG, resume_key
from prefect_conductor.tasks.watcher_runs import ENDING_TAG, ensure_watcher


def suspended_run(*tags: str, options: dict[str, Any] | None = None) -> FlowRun:
    return FlowRun(
        flow_id=uuid4(),
        tags=list(tags),
        state=Suspended(),
        parameters={"options": options or {"conductor_url": "http://127.0.0.1:1"}},
    )


def test_a_suspended_run_names_its_job_and_options() -> None:
    run = suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}42", "project:default")
    found = _waiting(run)
    assert found is not None
    assert (found.run_id, found.jid, found.options.conductor_url) == (
        run.id,
        "00042",
        "http://127.0.0.1:1",
    )


def test_runs_the_watcher_must_not_resume_are_skipped() -> None:
    assert _waiting(suspended_run(WAITING_TAG)) is None  # names no job
    assert _waiting(suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}1", f"{JID_TAG_PREFIX}2")) is None
    assert _waiting(suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}x1")) is None
    bad_options = suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}1", options={"nope": 1})
    assert _waiting(bad_options) is None
    paused = suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}1")
    paused.state = Paused()  # waiting for a person's approval, in its own process
    assert _waiting(paused) is None


def test_a_run_following_frames_says_how_many_tasks_it_has_downloaded() -> None:
    from prefect_conductor.conductor_cloud.api.status import TaskStatus
    from prefect_conductor.conductor_cloud.transfers.job_outputs import TaskState
    from prefect_conductor.tasks.follow import downloaded_tag

    following = _waiting(
        suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}42", downloaded_tag("00042", 1))
    )
    assert following is not None and following.downloaded == 1
    assert following.suspended_at is not None
    other_job = suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}42", downloaded_tag("00041", 1))
    elsewhere = _waiting(other_job)
    assert elsewhere is not None and elsewhere.downloaded is None
    scouts = _waiting(suspended_run(WAITING_TAG, f"{JID_TAG_PREFIX}42"))
    assert scouts is not None and scouts.downloaded is None

    two_done = [
        TaskState("000", "1", TaskStatus.SUCCESS),
        TaskState("001", "2", TaskStatus.DOWNLOADED),
        TaskState("002", "3", TaskStatus.RUNNING),
    ]
    since = following.suspended_at
    minute = timedelta(minutes=1)
    assert following.wants_frames(two_done, since + minute, minute)
    assert not following.wants_frames(two_done, since + minute / 2, minute)  # too soon
    assert not following.wants_frames(two_done[:1], since + minute, minute)  # has them all
    assert not scouts.wants_frames(two_done, since + minute, minute)  # not following frames


def test_only_jobs_in_a_final_state_are_finished() -> None:
    listing = [
        {"jid": "00001", "status": "success"},
        {"jid": "00002", "status": "running"},
        {"jid": "00003", "status": "failed"},
        {"jid": "00004", "status": "killed"},
        {"jid": "00005", "status": "archived"},  # a word nobody listed: keep waiting
        {"jid": "00006", "status": "downloaded"},
        {"jid": "abc", "status": "success"},
        {"status": "success"},
    ]
    assert finished_jobs(listing) == {"00001", "00003", "00004", "00006"}


def context(flow_run_id: object, name: str) -> TaskRunContext:
    task_run = SimpleNamespace(flow_run_id=flow_run_id, dynamic_key=str(uuid4()))
    return cast(TaskRunContext, SimpleNamespace(task_run=task_run, task=SimpleNamespace(name=name)))


def test_the_resume_key_survives_a_rerun_and_tells_calls_apart() -> None:
    run = uuid4()
    scout = {"payload": {"a": 1}, "submission_id": "k:scout", "step": "scout", "options": object()}
    # A re-run of the flow function: a new dynamic key, the same flow run, task and arguments.
    assert resume_key(context(run, "scout-submit"), scout) == resume_key(
        context(run, "scout-submit"), dict(scout, payload={"b": 2})
    )
    full = dict(scout, submission_id="k:full", step="full")
    assert resume_key(context(run, "job-finished"), scout) != resume_key(
        context(run, "job-finished"), full
    )
    assert resume_key(context(run, "scout-submit"), scout) != resume_key(
        context(uuid4(), "scout-submit"), scout
    )


# the watcher's life: started by a suspending run, passing while runs wait, then ending ----------


@pytest.fixture
def watcher_deployment(
    prefect_backend: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SyncPrefectClient, UUID]]:
    """A watch-jobs deployment of its own on the local backend (no worker: its runs only wait)."""
    name = f"watcher-{uuid4().hex[:8]}"
    monkeypatch.setenv("PREFECT_CONDUCTOR_WATCHER_DEPLOYMENT", f"watch-jobs/{name}")
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("watch-jobs")
        yield client, client.create_deployment(flow_id=flow_id, name=name)


def runs_of(client: SyncPrefectClient, deployment_id: UUID) -> list[FlowRun]:
    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
    )


def test_a_suspending_run_starts_a_watcher_only_when_none_is_on_duty(
    watcher_deployment: tuple[SyncPrefectClient, UUID],
) -> None:
    client, deployment_id = watcher_deployment
    assert ensure_watcher("run-1").startswith("started watch-jobs/")
    [first] = runs_of(client, deployment_id)
    assert first.parameters == {"every_seconds": 30.0}
    assert ensure_watcher("run-2").endswith("run is watching")
    assert len(runs_of(client, deployment_id)) == 1
    # The safety schedule's next run, an hour away, is not on duty.
    later: State[Any] = Scheduled(scheduled_time=datetime.now(UTC) + timedelta(hours=1))
    client.set_flow_run_state(first.id, later, force=True)
    assert ensure_watcher("run-3").startswith("started")
    # A watcher that is ending is not counted: the run that looks after it starts another.
    for run in runs_of(client, deployment_id):
        client.update_flow_run(run.id, tags=[ENDING_TAG])
    assert ensure_watcher("run-4").startswith("started")
    assert len(runs_of(client, deployment_id)) == 3
    client.pause_deployment(deployment_id)
    assert "is paused" in ensure_watcher("run-5")
    assert len(runs_of(client, deployment_id)) == 3


def test_without_a_watcher_deployment_the_run_says_so(
    prefect_backend: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_WATCHER_DEPLOYMENT", "watch-jobs/not-deployed")
    assert ensure_watcher("run-1").startswith("no watch-jobs/not-deployed deployment")


def test_a_watcher_passes_while_a_run_waits_and_hands_over_before_it_ends(
    watcher_deployment: tuple[SyncPrefectClient, UUID],
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its last look comes after it tagged itself ending: a run suspending meanwhile keeps it."""
    import prefect_conductor.flows.watch_jobs as module

    client, deployment_id = watcher_deployment
    waiting = client.create_flow_run_from_deployment(
        deployment_id,
        parameters={"options": {"conductor_url": conductor_env.url}},
        tags=[WAITING_TAG, f"{JID_TAG_PREFIX}42"],  # a job the sandbox does not list
    )
    client.set_flow_run_state(waiting.id, Suspended(), force=True)
    seen: list[str] = []

    def done_waiting() -> None:
        client.set_flow_run_state(waiting.id, Completed(), force=True)

    def nap(seconds: float) -> None:
        seen.append("sleep")
        done_waiting()

    set_ending = module._set_ending

    def ending(prefect: SyncPrefectClient, run_id: UUID, flag: bool) -> None:
        seen.append(f"ending={flag}")
        set_ending(prefect, run_id, flag)
        if flag and seen.count("ending=True") == 1:  # a run suspends just now
            prefect.set_flow_run_state(waiting.id, Suspended(), force=True)

    monkeypatch.setattr(module, "sleep", nap)
    monkeypatch.setattr(module, "_set_ending", ending)
    result = watch_jobs(every_seconds=0.01)
    assert seen == ["sleep", "ending=True", "ending=False", "sleep", "ending=True"]
    # One listing: in the first pass, the only one that found the run suspended.
    assert result["passes"] == 3 and result["resumed"] == [] and result["listings"] == 1


def test_a_run_following_frames_is_resumed_when_tasks_succeeded_that_it_has_not_downloaded(
    watcher_deployment: tuple[SyncPrefectClient, UUID],
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """One task listing per waiting job per pass feeds the job's clock; a run following frames
    is resumed for new frames (not more often than the setting allows); a run that downloaded
    them all, and a run waiting without following frames, wait on until the job finishes."""
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
    from prefect_conductor.conductor_cloud.transfers.job_outputs import task_states
    from prefect_conductor.tasks.follow import downloaded_tag
    from prefect_conductor.tasks.task_clocks import ClockRecords
    from tests.eventually import eventually
    from tests.test_job_outputs import submit

    client, deployment_id = watcher_deployment
    with ConductorClient(token_cache_dir=tmp_path / "tokens") as conductor:
        jid = submit(conductor, conductor_env, scout_frames="1")  # 000 renders, the rest hold
        eventually(lambda: task_states(conductor, jid)[0].status.succeeded, what="task 000")
    # The sandbox hands out job ids again after a reset: an earlier test's clock for this id is
    # another job's.
    ClockRecords().write(jid, TaskClock())

    def waiting(*tags: str) -> UUID:
        run = client.create_flow_run_from_deployment(
            deployment_id,
            parameters={"options": {"conductor_url": conductor_env.url}},
            tags=[WAITING_TAG, f"{JID_TAG_PREFIX}{jid}", *tags],
        )
        client.set_flow_run_state(run.id, Suspended(), force=True)
        return run.id

    behind = waiting(downloaded_tag(jid, 0))
    caught_up = waiting(downloaded_tag(jid, 1))
    scout_wait = waiting()

    def suspended(run_id: UUID) -> bool:
        state = client.read_flow_run(run_id).state
        return state is not None and state.name == "Suspended"

    monkeypatch.setenv("PREFECT_CONDUCTOR_FRAMES_RESUME_SECONDS", "3600")
    early = watch_jobs()
    assert (early["resumed"], early["listings"], early["task_listings"]) == ([], 1, 1)
    assert all(suspended(run) for run in (behind, caught_up, scout_wait))

    monkeypatch.setenv("PREFECT_CONDUCTOR_FRAMES_RESUME_SECONDS", "0")
    later = watch_jobs()
    assert (later["resumed"], later["listings"], later["task_listings"]) == ([jid], 1, 1)
    assert not suspended(behind)
    assert suspended(caught_up) and suspended(scout_wait)
    clock = ClockRecords().read(jid)
    assert "000" in clock.ended and "001" not in clock.ended
