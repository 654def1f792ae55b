"""scout_submit / full_submit: post one job per step, once, and wait for tasks to finish.

The submission id ``<submission key>:<step>`` goes into the job's metadata; the client looks it
up before every POST (so a retried task, a retried flow run or a second run with the same
submission key finds the job instead of posting), and after a POST that may have reached
Conductor it only looks, then fails the run if the job does not show (docs/protocol.md). Two
runs posting the same id at once take turns on a Prefect concurrency limit (``submission_lock``),
so the second one's lookup sees the first one's job.

The scout wait reads ``GET api/v1/tasks?filter=jobLabel_eq_<jid>``; a status word nobody listed
counts as "not finished" (``status.py``), so it can only make the wait run to its limit, which
then names the job, a task and the word seen.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from prefect_conductor.conductor_cloud.api.client import SubmittedJob
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.transfers import job_outputs
from prefect_conductor.conductor_cloud.transfers.job_outputs import TaskState
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.conductor_limits import conductor_slot
from prefect_conductor.tasks.job_events import JOB_SUBMITTED, emit_job_event
from prefect_conductor.tasks.submission_lock import submission_lock


class ScoutFailed(SubmitterError):
    """Scout tasks failed: the rest of the frames are not submitted. Not retried: the render's
    failure is Conductor's answer, and re-submitting the same scouts would spend money again."""

    exit_code = 4


@task(
    name="submit-job",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=never_retry_user_errors,
)
def submit_job(
    payload: dict[str, Any], submission_id: str, step: str, options: RunOptions
) -> SubmittedJob:
    """Post the job for ``submission_id`` (or find the one already posted) and link to it."""
    # Lookup-then-post is not atomic: a Prefect-held lock makes it so across workers. The
    # studio-wide job-post slot is taken second, so a run waiting for its id holds no slot.
    with (
        submission_lock(submission_id),
        conductor_slot("job-post"),
        client_for(options) as client,
    ):
        job = client.submit_job(payload, submission_id, first_attempt=_first_attempt())
    verb = "submitted" if job.created else "already submitted"
    get_run_logger().info("%s job %s %s: %s", step, job.jid, verb, job.dashboard_url)
    create_link_artifact(
        job.dashboard_url,
        link_text=f"{step} job {job.jid}",
        key=f"{step}-job",
        description=f"The {step} job's page on {urlsplit(job.dashboard_url).netloc}",
    )
    emit_job_event(
        JOB_SUBMITTED,
        job.jid,
        str(payload.get("job_title") or job.jid),
        {"step": step, "created": job.created, "url": job.dashboard_url},
    )
    return job


def _first_attempt() -> datetime | None:
    """When this flow run was first due: the lookup's window starts the day before it."""
    when = flow_run.scheduled_start_time
    return when if isinstance(when, datetime) else None


scout_submit = submit_job.with_options(name="scout-submit")
"""The gated scout job: only the tasks that hold a scout frame."""

full_submit = submit_job.with_options(name="full-submit")
"""The rest of the frames (every task when scouting is off or native)."""


@task(
    name="wait-for-tasks",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=never_retry_user_errors,
)
def wait_for_tasks(jid: str, options: RunOptions) -> dict[str, int]:
    """Wait in this process until every task of the scout job has finished; log each change.

    The job's failed tasks are named by the ``job-finished`` step that follows.
    """
    logger = get_run_logger()
    minutes = options.scout_timeout_minutes
    seen: dict[str, int] = {}
    last: list[TaskState] = []

    def log_counts(states: list[TaskState]) -> None:
        last[:] = states
        statuses = [s.status for s in states]
        counts = {str(s): statuses.count(s) for s in set(statuses)}
        if counts != seen:
            logger.info("job %s tasks: %s", jid, counts)
            seen.clear()
            seen.update(counts)

    with client_for(options) as client:
        try:
            job_outputs.wait_for_tasks(
                client,
                jid,
                poll_seconds=options.poll_seconds,
                timeout_seconds=minutes * 60.0,
                on_poll=log_counts,
            )
        except job_outputs.JobNotFinished:
            raise ScoutFailed(_unfinished(jid, last, minutes)) from None
    return seen


def _unfinished(jid: str, states: list[TaskState], minutes: int) -> str:
    """One line: the job, the first task still open and the word Conductor showed for it."""
    state = next(s for s in states if not s.status.finished)
    return (
        f"scout job {jid} did not finish in {minutes} minutes: task {state.tid} is still"
        f" {state.word or str(state.status)!r}; nothing more was submitted"
    )
