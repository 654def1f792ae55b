"""The watcher's reading of Prefect runs and Conductor's job listing, and the resume cache key."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun
from prefect.context import TaskRunContext
from prefect.states import Paused, Suspended

from prefect_conductor.flows.watch_jobs import _waiting, finished_jobs
from prefect_conductor.tasks.follow import JID_TAG_PREFIX, WAITING_TAG, resume_key


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
