"""scout_submit / full_submit: post one job per step, once, and wait for tasks to finish.

What was posted for the submission id ``<submission key>:<step>`` is recorded in Prefect's result
storage (``post_records``) in the same step as the POST: the tagged job title before it, the job
id after it. A retried task, a retried flow run or a second run with the same submission key
reads the record and returns the job without asking Conductor; only after a POST whose outcome is
unknown does the client look for the job by its tagged title, and it fails the run if the job does
not show (docs/protocol.md). Two runs posting the same id at once take turns on a Prefect
concurrency limit (``submission_lock``), so the second one reads the first one's record.

The scout wait reads the job's task listing (``GET api/v1/tasks?filter=jobLabel_eq_..``, as
Conductor's own clients do) every ``poll_seconds``, steadily, and feeds each look to the job's
task clock (``task_clocks.py``), so the scout tasks' times, to within that interval, are there for
the cost estimate. A status word nobody listed counts as "not finished" (``status.py``), so it can
only make the wait run to its limit, which then names the job and the words seen; failed tasks
are named by their frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from prefect_conductor.conductor_cloud.api.client import SubmittedJob
from prefect_conductor.conductor_cloud.api.status import FINISHED_WORDS, not_rendered_line
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.frames import FrameList, parse_frame_spec
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.submission.rerender import rerender_labels
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    JobNotFinished,
    TaskState,
    listed_tasks,
)
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.conductor_limits import conductor_slot
from prefect_conductor.tasks.job_events import JOB_SUBMITTED, emit_job_event
from prefect_conductor.tasks.post_records import PrefectPostRecords
from prefect_conductor.tasks.submission_lock import submission_lock
from prefect_conductor.tasks.task_clocks import clocked_wait, first_look


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
    # Read-record-then-post is not atomic: a Prefect-held lock makes it so across workers. The
    # studio-wide job-post slot is taken second, so a run waiting for its id holds no slot.
    with (
        submission_lock(submission_id),
        conductor_slot("job-post"),
        client_for(options) as client,
    ):
        job = client.submit_job(
            payload,
            submission_id,
            first_attempt=_first_attempt(),
            records=PrefectPostRecords(),
        )
        if job.created:
            first_look(client, job.jid)
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
        {
            "step": step,
            "created": job.created,
            "url": job.dashboard_url,
            **rerender_labels(payload),
        },
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

rerender_submit = submit_job.with_options(name="rerender-submit")
"""A full job's failed or preempted tasks, rendered again as a new job (``tasks/rerender.py``)."""


@task(
    name="wait-for-tasks",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=never_retry_user_errors,
)
def wait_for_tasks(jid: str, options: RunOptions) -> dict[str, int]:
    """Look at the job's task listing every ``poll_seconds`` until every task finished, timing
    each task on the way (``task_clocks.clocked_wait``); raise naming failed frames."""
    logger = get_run_logger()
    with client_for(options) as client:
        try:
            tasks = clocked_wait(
                client,
                jid,
                poll_seconds=options.poll_seconds,
                timeout_seconds=options.scout_timeout_minutes * 60.0,
                steady=True,
            )
        except JobNotFinished:
            words = sorted({t.word or str(t.status) for t in listed_tasks(client, jid)})
            word = ", ".join(w for w in words if w not in FINISHED_WORDS) or "unknown"
            raise ScoutFailed(_unfinished(jid, word, options.scout_timeout_minutes)) from None
    statuses = [t.status for t in tasks]
    counts = {str(s): statuses.count(s) for s in set(statuses)}
    logger.info("job %s tasks: %s", jid, counts)
    failed = [t for t in tasks if not t.status.succeeded]
    if failed:
        raise scout_failed(jid, failed)
    return counts


def scout_failed(jid: str, bad: Sequence[TaskState]) -> ScoutFailed:
    """The one line for scout tasks that did not render: how, and their frames (else tids)."""
    frames = FrameList.from_iterable(
        frame for t in bad if t.frames for frame in parse_frame_spec(t.frames)
    )
    named = f"frames {frames}" if frames else "tasks " + ", ".join(t.tid for t in bad)
    lost = not_rendered_line(t.status for t in bad)
    return ScoutFailed(f"scout job {jid}: {lost}, {named}; the remaining frames were not submitted")


def _unfinished(jid: str, word: object, minutes: int) -> str:
    """One line: the job and the status words its unfinished tasks showed last."""
    return (
        f"scout job {jid} did not finish in {minutes} minutes: the job is still {str(word)!r};"
        " nothing more was submitted"
    )
