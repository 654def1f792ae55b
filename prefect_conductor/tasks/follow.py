"""Follow a posted job until its tasks finish, holding no process while Conductor renders.

A run that comes from a deployment (a worker started it) *suspends*: it tags itself
``conductor-waiting`` and ``conductor-jid:<jid>`` and calls ``suspend_flow_run``, so its process
exits and the worker's slot is free. Before it goes, it makes sure a ``watch-jobs`` run is on
duty (``tasks/watcher_runs.py``): that run lists every job in flight with one Conductor call per
pass while any run waits, resumes the runs whose jobs have finished (and a run following its
job's frames, tagged ``conductor-downloaded:<jid>:<n>``, when more than n tasks have succeeded),
and ends when none waits; the worker then starts each resumed run again from the top, which may
suspend again on the same job. Every task before the wait is
cached on (flow run, task, call number) with its result persisted (:data:`RESUMABLE`), so the
re-run re-uses the exports, uploads and job ids and posts nothing twice (the client's
submission-id lookup stays as the second guard).

A run without a deployment (``prefect-conductor submit`` on the local server, tests on the
ephemeral backend) cannot be suspended (Prefect needs a deployment to start it again), so it polls
in its own process instead, as before.

Events (the job as resource ``conductor.job.<jid>``, named by the job's title, the flow run as
the related resource): ``conductor.job.submitted`` from the submit task (so a cached re-run does
not repeat it), ``conductor.scouts.finished`` and ``conductor.job.finished`` from
:func:`job_finished` with the success/failed counts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import PrefectException
from prefect.flow_runs import suspend_flow_run
from prefect.runtime import flow_run

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    TaskState,
    all_finished,
    listed_tasks,
    task_states,
)
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.job_events import JOB_FINISHED, SCOUTS_FINISHED, emit_job_event
from prefect_conductor.tasks.submit import scout_failed
from prefect_conductor.tasks.task_clocks import clocked_wait
from prefect_conductor.tasks.watcher_runs import ensure_watcher

WAITING_TAG = "conductor-waiting"
"""The tag of a run suspended until a Conductor job finishes (what the watcher looks for)."""
JID_TAG_PREFIX = "conductor-jid:"
"""``conductor-jid:<jid>``: the job a suspended run waits for."""
DOWNLOADED_TAG_PREFIX = "conductor-downloaded:"
"""``conductor-downloaded:<jid>:<n>``: a run following the job, with ``n`` of its tasks already
downloaded; the watcher resumes it when more have succeeded (``flows/watch_jobs.py``)."""


def downloaded_tag(jid: str, count: int) -> str:
    """The tag saying how many of job ``jid``'s tasks this run has downloaded."""
    return f"{DOWNLOADED_TAG_PREFIX}{jid}:{count}"


def resume_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One cache entry per (flow run, task, plain arguments): a resumed run's re-run finds it.

    Prefect's own call number (``dynamic_key``) is a fresh uuid on every run of the flow
    function, and models and paths do not always hash; the plain arguments (the submission id,
    the step, the job id) tell apart the calls of one task within a run. A new flow run (a new
    id) never re-uses another run's results.
    """
    plain = {k: v for k, v in sorted(parameters.items()) if isinstance(v, str | int | float | bool)}
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]
    return f"resume-{context.task_run.flow_run_id}-{context.task.name}-{digest}"


RESUMABLE: dict[str, Any] = {"cache_key_fn": resume_key, "persist_result": True}
"""``task.with_options(**RESUMABLE)`` for every task a suspended run passes before its wait."""


def counts(states: list[TaskState]) -> dict[str, int]:
    """``{"success": n, "failed": n, "preempted": n, "total": n}``: failed counts failed and
    killed tasks, preempted those left preempted after Conductor's retries (not rendered)."""
    success = sum(1 for s in states if s.status.succeeded)
    failed = sum(1 for s in states if s.status in (TaskStatus.FAILED, TaskStatus.KILLED))
    preempted = sum(1 for s in states if s.status is TaskStatus.PREEMPTED)
    return {"success": success, "failed": failed, "preempted": preempted, "total": len(states)}


def can_suspend() -> bool:
    """Whether this run can be started again after a suspend: a deployment's run on a work pool.

    A served deployment (``flow.serve``, no work pool) polls in-process instead: nothing promises
    that a watcher resumes it, and its serve process is alive anyway.
    """
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return bool(run and run.deployment_id and run.work_pool_name)


def _retag(add: set[str], drop_prefixes: tuple[str, ...]) -> None:
    """Update this run's tags: drop those starting with ``drop_prefixes``, then add ``add``."""
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        kept = {t for t in run.tags if not t.startswith(drop_prefixes)}
        if kept | add != set(run.tags):
            client.update_flow_run(run.id, tags=sorted(kept | add))


def _next_key(jid: str) -> str:
    """A pause key this run has not used: a second suspend on the same job must not be refused
    as "already resumed" (Prefect turns a reused key into a no-op)."""
    with get_client(sync_client=True) as client:
        used = client.read_flow_run(flow_run.id).empirical_policy.pause_keys or set()
    prefix = f"conductor-{jid}-"
    return f"{prefix}{sum(1 for k in used if str(k).startswith(prefix))}"


def await_job(
    jid: str, options: RunOptions, timeout_minutes: int, downloaded: int | None = None
) -> None:
    """Return once every task of job ``jid`` has finished.

    From a deployment: look once; if tasks are still open, tag the run and suspend it (the
    process exits here; the watcher resumes the run and the re-run comes back to this call).
    ``downloaded`` (a run following the job's frames) says how many tasks it has downloaded: the
    watcher then also resumes it when more have succeeded. Without a deployment: poll in this
    process with backoff until ``timeout_minutes``.
    """
    logger = get_run_logger()
    if not can_suspend():
        with client_for(options) as client:
            clocked_wait(
                client,
                jid,
                poll_seconds=options.poll_seconds,
                timeout_seconds=timeout_minutes * 60.0,
            )
        return
    with client_for(options) as client:
        states = listed_tasks(client, jid)
    if all_finished(states):
        _retag(set(), (WAITING_TAG, JID_TAG_PREFIX, DOWNLOADED_TAG_PREFIX))
        return
    tags = {WAITING_TAG, f"{JID_TAG_PREFIX}{jid}"}
    if downloaded is not None:
        tags.add(downloaded_tag(jid, downloaded))
    _retag(tags, (JID_TAG_PREFIX, DOWNLOADED_TAG_PREFIX))
    key = _next_key(jid)
    try:  # after the tag: a watcher that is ending then either sees this run or is not counted
        logger.info("watcher: %s", ensure_watcher(f"{flow_run.id}-{key}"))
    except (httpx.HTTPError, PrefectException, SubmitterError) as error:
        # The job is posted: never fail the run for its watcher. The safety schedule, or the
        # next run that suspends, starts one.
        logger.warning("could not make sure a watcher runs: %s", error)
    logger.info(
        "job %s: %d of %d tasks still open; suspending until %s (no process is held)",
        jid,
        sum(1 for s in states if not s.status.finished),
        len(states),
        "it finishes" if downloaded is None else "more tasks succeed or it finishes",
    )
    suspend_flow_run(timeout=timeout_minutes * 60, key=key)


@task(name="job-finished", retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=never_retry_user_errors, **RESUMABLE)  # fmt: skip
def job_finished(
    jid: str,
    step: str,
    title: str,
    options: RunOptions,
    labels: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Count the finished job's tasks and tell the pipeline; failed scouts stop the run.

    Cached for the run, so a later resume does not emit the event again. ``labels`` join the
    event's payload (a re-render's attempt and first job).
    """
    with client_for(options) as client:
        states = task_states(client, jid)
    tally = counts(states)
    event = SCOUTS_FINISHED if step == "scout" else JOB_FINISHED
    emit_job_event(event, jid, title, {"step": step, **tally, **(labels or {})})
    get_run_logger().info("%s job %s finished: %s", step, jid, tally)
    if step == "scout" and (tally["failed"] or tally["preempted"]):
        raise scout_failed(jid, [s for s in states if not s.status.succeeded])
    return tally
