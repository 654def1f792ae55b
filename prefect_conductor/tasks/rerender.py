"""Follow the full job to every frame on disk, rendering failed or preempted tasks again.

After the full job settles, its tasks that ended failed or preempted (after Conductor's own
autoretry) are posted again as a new job (``submission/rerender.py``) through the same submit
task, so the same duplicate guard: submission id ``<key>:rerender-<n>``. Each job is followed the
same way and its frames go into the first job's download folder, so one frame check sees every
frame: each task's latest attempt, plus the scout job's frames. At most
``rerender_attempts`` new jobs; a preempted task is posted again only if a fresh look at the
listing, just before posting, still shows it preempted (a task Conductor took up again is waited
for instead).

A suspended run is started again from the top when resumed: the choice of tasks for an attempt is
a cached step (keyed by the job, the attempt and the look), so the re-run chooses what the first
run chose, and the submit step returns the job already posted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from prefect_conductor.conductor_cloud.api.client import SubmittedJob
from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.submission.rerender import (
    Ledger,
    rerender_labels,
    rerender_payload,
    rerender_step,
    still_to_rerender,
)
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    TasksFailed,
    TaskState,
    all_finished,
    listed_tasks,
    log_tail,
)
from prefect_conductor.conductor_cloud.transfers.output_frames import (
    check_job_frames,
    load_scene_images,
    raise_for_frames,
    summary,
)
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.cost_estimate import measured_usage
from prefect_conductor.tasks.download import download_finished_tasks, download_job_outputs
from prefect_conductor.tasks.follow import RESUMABLE, await_job, can_suspend, job_finished
from prefect_conductor.tasks.submit import rerender_submit
from prefect_conductor.tasks.task_clocks import ClockRecords

MAX_LOOKS = 3
"""How often one job is followed again because Conductor took a preempted task up again."""


@task(name="choose-rerender", retries=2, retry_delay_seconds=[5, 30],
      retry_condition_fn=never_retry_user_errors)  # fmt: skip
def choose_rerender(
    jid: str, attempt: int, look: int, chosen: list[list[str]], options: RunOptions
) -> list[str]:
    """Of the tasks ``[tid, status]`` chosen from job ``jid``, the tids a fresh look at the
    listing still shows failed or preempted; empty when Conductor took one up again."""
    before = [TaskState(tid=t, frames="", status=TaskStatus.parse(w)) for t, w in chosen]
    with client_for(options) as client:
        fresh = listed_tasks(client, jid)
    still = still_to_rerender(before, fresh)
    if len(still) != len(before):
        get_run_logger().info(
            "job %s: Conductor took up a preempted task again; following the job again", jid
        )
        return []
    return [s.tid for s in still]


@task(name="check-frames", retries=1, retry_delay_seconds=10,
      retry_condition_fn=never_retry_user_errors)  # fmt: skip
def check_frames(
    scene_export: str, states: list[TaskState], output_path: str, folder: str, jid: str
) -> dict[str, Any]:
    """Every image's frames on disk under ``folder``, across the tasks' latest attempts."""
    scene = load_scene_images(Path(scene_export))
    checks = check_job_frames(scene, states, output_path, Path(folder))
    try:
        raise_for_frames(jid, checks)
    except ServiceError as error:
        for problem in getattr(error, "problems", []):
            get_run_logger().error(problem)
        raise
    return summary(checks)


def follow_with_rerenders(
    *,
    full: SubmittedJob,
    body: dict[str, Any],
    key: str,
    job: ConductorJob,
    folder: str | None,
    scene_export: str | None,
    options: RunOptions,
    scout_jid: str = "",
    estimate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Follow the full job and its re-renders until every frame rendered or no attempt is left.

    The full job's ``conductor.job.finished`` carries its instance-hours (``usage``) beside the
    scouts' ``estimate`` of it.

    Returns the download summary of all jobs; raises :class:`TasksFailed` in one line naming the
    frames no attempt rendered and the jobs tried (each failed task's log tail in the run's logs).
    """
    logger = get_run_logger()
    kept = (lambda step: step.with_options(**RESUMABLE)) if can_suspend() else (lambda step: step)
    first = full.jid
    ledger = Ledger(first, len(body.get("tasks_data") or ()))
    positions = list(range(ledger.task_count))
    jid, title, attempt, look = first, _title(body), 0, 0
    labels: dict[str, Any] = {}
    downloads: dict[str, dict[str, Any]] = {}
    while True:
        finished = labels if attempt else {"estimate": estimate} if estimate else {}
        states, seconds, downloads[jid] = _settle(
            jid, title, attempt, finished, folder, first, options, job
        )
        ledger.record(jid, states, positions, seconds)
        bad = [ledger.latest[p][1] for p in ledger.positions_to_rerender()]
        if not bad or attempt >= job.rerender_attempts:
            break
        chosen = [[s.tid, s.word or str(s.status)] for s in bad]
        tids = kept(choose_rerender)(jid, attempt + 1, look, chosen, options)
        if not tids:
            look += 1
            if look >= MAX_LOOKS:
                break
            continue
        by_tid = {s.tid: p for p, (j, s) in ledger.latest.items() if j == jid}
        positions = sorted(by_tid[t] for t in tids)
        preempted = any(s.status is TaskStatus.PREEMPTED for s in bad if s.tid in tids)
        attempt, look = attempt + 1, 0
        submission_id = f"{key}:{rerender_step(attempt)}"
        payload = rerender_payload(
            body,
            positions,
            attempt=attempt,
            first_jid=first,
            submission_id=submission_id,
            on_demand=job.rerender_on_demand and preempted,
        )
        logger.info(
            "re-render %d of job %s: %d task(s)%s",
            attempt,
            first,
            len(positions),
            " on on-demand machines" if payload["preemptible"] is False else "",
        )
        posted = kept(rerender_submit)(payload, submission_id, "rerender", options)
        jid, title, labels = posted.jid, _title(payload), rerender_labels(payload)
    create_table_artifact(
        [a.row() for a in ledger.attempts],
        key="render-attempts",
        description=f"Job {first} and its re-renders: frames, outcome, instance-hours",
    )
    if scout_jid:
        downloads[scout_jid] = _download(scout_jid, folder, first, options)
    totals = _totals(first, downloads)
    if ledger.unrendered():
        error = TasksFailed(ledger.failure_line(), _log_tails(ledger, options))
        for line in error.log_lines():
            logger.error(line)
        raise error
    if scene_export:
        totals["frames"] = check_frames(
            scene_export,
            ledger.latest_states() + (_listing(scout_jid, options) if scout_jid else []),
            str(body.get("output_path") or ""),
            str(totals["output_folder"]),
            first,
        )
    totals["attempts"] = [a.row() for a in ledger.attempts]
    return totals


def _settle(
    jid: str,
    title: str,
    attempt: int,
    labels: dict[str, Any],
    folder: str | None,
    first: str,
    options: RunOptions,
    job: ConductorJob,
) -> tuple[list[TaskState], dict[str, float], dict[str, Any]]:
    """Wait for job ``jid``, count it, download what rendered: its tasks, their times, the
    download's summary."""
    step = "full" if attempt == 0 else "rerender"
    wait = 0.0 if can_suspend() else options.render_timeout_minutes * 60.0
    for _ in range(MAX_LOOKS):
        got = download_finished_tasks(
            jid, folder, title, wait, options.poll_seconds, options, folder_jid=first
        )
        await_job(jid, options, options.render_timeout_minutes, downloaded=got["tasks"])
        states = _listing(jid, options)
        if all_finished(states):
            break
    if attempt == 0:  # the full job, on the job's own machines: its usage beside the estimate
        labels = {**labels, "usage": measured_usage(jid, job)}
    job_finished(jid, step, title, options, labels or None)
    outputs = _download(jid, folder, first, options)
    return states, _stored_clock(jid).durations(), outputs


def _download(jid: str, folder: str | None, first: str, options: RunOptions) -> dict[str, Any]:
    """Fetch what job ``jid`` rendered into the first job's folder; failed tasks are ours."""
    return download_job_outputs(
        jid, folder, None, [], 0.0, options.poll_seconds, options, folder_jid=first, failed_ok=True
    )


def _listing(jid: str, options: RunOptions) -> list[TaskState]:
    with client_for(options) as client:
        return listed_tasks(client, jid)


def _stored_clock(jid: str) -> TaskClock:
    """The job's task clock as this run's looks, or the watcher's, kept it (empty if none)."""
    try:
        return ClockRecords().read(jid)
    except (OSError, ValueError):
        return TaskClock()


def _log_tails(ledger: Ledger, options: RunOptions) -> dict[str, list[str]]:
    """The last log lines of each task that failed in its last attempt (``<tid> of job <jid>``)."""
    logs: dict[str, list[str]] = {}
    with client_for(options) as client:
        for jid, state in ledger.unrendered():
            if state.status is TaskStatus.FAILED:
                logs[f"{state.tid} of job {jid}"] = log_tail(client, jid, state.tid)
    return logs


def _totals(first: str, downloads: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The jobs' downloads summed (each job's last), in the first job's folder."""
    totals: dict[str, Any] = {
        "jid": first,
        "output_folder": downloads[first]["output_folder"],
        "frames": {},
    }
    for name in ("files", "bytes", "bytes_fetched"):
        totals[name] = sum(int(d.get(name) or 0) for d in downloads.values())
    return totals


def _title(body: dict[str, Any]) -> str:
    return str(body.get("job_title") or "")
