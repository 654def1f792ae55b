"""scout_submit / full_submit: post one job per step, once, and wait for tasks to finish.

The submission id ``<submission key>:<step>`` goes into the job's metadata; the client looks it
up before posting and after any ambiguous failure, so a retried task, a retried flow run or a
second run with the same submission key never creates a second job. Two runs posting the same id
at once take turns on a Prefect concurrency limit (``submission_lock``), so the second one's
lookup sees the first one's job.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact

from prefect_conductor.conductor_cloud.client import SubmittedJob
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.frames import FrameList, parse_frame_spec
from prefect_conductor.conductor_cloud.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.status import TaskStatus
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.submission_lock import submission_lock

MAX_POLL_SECONDS = 60.0


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
    # Lookup-then-post is not atomic: a Prefect-held lock makes it so across workers.
    with submission_lock(submission_id), client_for(options) as client:
        job = client.submit_job(payload, submission_id)
    verb = "submitted" if job.created else "already submitted"
    get_run_logger().info("%s job %s %s: %s", step, job.jid, verb, job.dashboard_url)
    create_link_artifact(
        job.dashboard_url,
        link_text=f"{step} job {job.jid}",
        key=f"{step}-job",
        description=f"The {step} job on the Conductor dashboard",
    )
    return job


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
    """Poll the job's tasks with backoff until all finished; raise naming failed frames."""
    logger = get_run_logger()
    deadline = time.monotonic() + options.scout_timeout_minutes * 60
    interval = options.poll_seconds
    seen: dict[str, int] = {}
    with client_for(options) as client:
        while True:
            tasks = client.get_tasks(jid)
            statuses = [TaskStatus(t["status"]) for t in tasks]
            counts = {str(s): statuses.count(s) for s in set(statuses)}
            if counts != seen:
                logger.info("job %s tasks: %s", jid, counts)
                seen = counts
            if all(s.finished for s in statuses):
                break
            if time.monotonic() > deadline:
                raise ScoutFailed(
                    f"scout job {jid} did not finish in {options.scout_timeout_minutes} minutes;"
                    " nothing more was submitted"
                )
            time.sleep(interval)
            interval = min(MAX_POLL_SECONDS, interval * 1.5)
    failed = [t for t in tasks if TaskStatus(t["status"]) is not TaskStatus.SUCCESS]
    if failed:
        frames = FrameList.from_iterable(
            frame for t in failed for frame in parse_frame_spec(str(t["frames"]))
        )
        raise ScoutFailed(
            f"scout job {jid}: {len(failed)} task(s) failed, frames {frames}; the remaining"
            " frames were not submitted"
        )
    return seen
