"""The download steps: each task's files as it succeeds, then the whole job's check.

``download-finished-tasks`` (the follow step of a render run) downloads the tasks of a job that
have succeeded, emitting ``conductor.task.downloaded`` for each one, so a studio can start comps
or dailies on the first frames: a local run waits in it, downloading each task as it succeeds; a
deployed run looks once per resume, downloads what is new and suspends again (``tasks/follow.py``,
``flows/watch_jobs.py``), keeping which tasks it has downloaded in result storage
(:class:`DownloadedRecords`) so a resumed run neither fetches nor announces one twice.
``download-job-outputs`` (the step of ``download-outputs`` and the follow's last step) waits,
fetches what is left, reports, and checks the frames.

The transfer runs in a helper thread so this task's own thread (which holds the Prefect run
context) can update the progress artifact once a second and emit the per-task events; the
transfer threads never call Prefect. A step that fails transiently (a storage host dropping
connections) is retried by Prefect and resumes: files already complete are not fetched again.
Failed tasks and missing frames are not retried: another attempt cannot render them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.results import ResultStore
from prefect.runtime import flow_run

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.downloads import DownloadStats
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    JobOutputs,
    TasksFailed,
    TaskState,
    all_finished,
    fetch_outputs,
    listed_tasks,
    wait_for_tasks,
)
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.output_frames import (
    FramesMissing,
    load_scene_images,
    summary,
)
from prefect_conductor.conductor_cloud.transfers.task_downloads import (
    TaskDownloaded,
    TaskDownloader,
)
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.job_events import TASK_DOWNLOADED, emit_job_event
from prefect_conductor.tasks.task_clocks import ClockRecords, record_store

PROGRESS_SECONDS = 1.0
INSTALLATION = Path(__file__).resolve().parents[2]
"""The folder holding the ``prefect_conductor`` package: the checkout, or site-packages."""


def download_folder_for(scene_file: str) -> str | None:
    """Where a followed job's frames go: None (the job's own output folder), except for a scene
    inside this installation, such as the sample ``examples/shot010``, whose Save As points into
    the checkout (or site-packages); its frames go to ``PREFECT_CONDUCTOR_HOME/downloads/<jid>``.
    """
    if scene_file and Path(scene_file).resolve().is_relative_to(INSTALLATION):
        return str(get_settings().home / "downloads")
    return None


def _percent(stats: DownloadStats | None) -> float:
    if stats is None or not stats.bytes_total:
        return 0.0
    return min(100.0, 100.0 * stats.bytes_done / stats.bytes_total)


_Value = TypeVar("_Value")


@dataclass
class _Outcome(Generic[_Value]):
    """What the helper thread's work returned, or the error it raised."""

    value: _Value | None = None
    error: BaseException | None = None


def _in_helper_thread(
    name: str,
    work: Callable[[], _Value],
    artifact: UUID,
    live: dict[str, DownloadStats],
    done: queue.Queue[TaskDownloaded] | None = None,
    on_done: Callable[[TaskDownloaded], None] | None = None,
) -> _Outcome[_Value]:
    """Run ``work`` in a helper thread; meanwhile, from this (the task's) thread, update the
    progress artifact once a second and hand each task the transfer threads put on ``done`` to
    ``on_done`` as soon as it arrives."""
    outcome: _Outcome[_Value] = _Outcome()

    def run() -> None:
        try:
            outcome.value = work()
        except BaseException as error:  # handed to the task's thread below
            outcome.error = error

    worker = threading.Thread(target=run, name=name, daemon=True)
    worker.start()
    waiting = done if done is not None else queue.Queue()
    shown = time.monotonic()
    while True:
        alive = worker.is_alive()
        try:
            item = waiting.get(timeout=PROGRESS_SECONDS if alive else 0)
        except queue.Empty:
            item = None
        if item is not None and on_done is not None:
            on_done(item)
        if item is None or time.monotonic() - shown >= PROGRESS_SECONDS:
            update_progress_artifact(artifact_id=artifact, progress=_percent(live.get("stats")))
            shown = time.monotonic()
            if item is None and not alive:
                return outcome


class DownloadedRecords:
    """Which of a job's tasks a flow run has downloaded, in the run's result storage, so the
    run resumed after a suspend neither fetches nor announces a task twice."""

    PREFIX = "prefect-conductor-downloaded-"

    def __init__(self, store: ResultStore | None = None) -> None:
        self.store = record_store(store)

    def key(self, run_id: str, jid: str) -> str:
        if not (jid.isascii() and jid.isdigit()):
            raise ValueError(f"not a job id: {jid[:40]!r}")
        return f"{self.PREFIX}{UUID(run_id)}-{jid}"

    def read(self, run_id: str, jid: str) -> set[str]:
        """The task ids recorded for the run and job; none when nothing was."""
        key = self.key(run_id, jid)
        if not self.store.exists(key):
            return set()
        value: Any = self.store.read(key).result
        if not isinstance(value, dict) or value.get("jid") != jid:
            return set()
        return {str(tid) for tid in value.get("tids") or () if str(tid).isdigit()}

    def write(self, run_id: str, jid: str, tids: set[str]) -> None:
        self.store.write({"jid": jid, "tids": sorted(tids)}, key=self.key(run_id, jid))


@task(
    name="download-finished-tasks",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=never_retry_user_errors,
)
def download_finished_tasks(
    jid: str,
    output_folder: str | None,
    title: str,
    wait_seconds: float,
    poll_seconds: float,
    options: RunOptions,
    folder_jid: str = "",
) -> dict[str, Any]:
    """Download the job's succeeded tasks, each as soon as it succeeds, with an event for each.

    ``wait_seconds`` 0 looks once (a deployed run, which suspends in between); otherwise it waits
    that long for every task to finish (``JobNotFinished`` when time is up). Returns
    ``{"jid", "tasks": downloaded so far, "succeeded", "total", "finished"}``.
    """
    logger = get_run_logger()
    run_id = str(flow_run.id)
    records = DownloadedRecords()
    clocks = ClockRecords()
    already = records.read(run_id, jid)
    clock = clocks.read(jid)
    artifact = cast(
        UUID,
        create_progress_artifact(
            progress=0.0, key="download-progress", description=f"Downloading job {jid}"
        ),
    )
    live: dict[str, DownloadStats] = {}
    arrived: queue.Queue[TaskDownloaded] = queue.Queue()
    looked: list[list[TaskState]] = []

    def seen(stats: DownloadStats) -> None:
        live["stats"] = stats

    def work() -> list[TaskState]:
        with client_for(options) as client, Md5Cache(get_settings().md5_cache_path) as cache:
            downloader = TaskDownloader(
                client,
                jid,
                Path(output_folder) if output_folder else None,
                cache=cache,
                clock=clock,
                on_poll=looked.append,
                on_task=arrived.put,
                on_listed=seen,
                on_progress=seen,
                already=already,
                folder_jid=folder_jid or None,
            )
            if wait_seconds <= 0:
                states = listed_tasks(client, jid)
                downloader.look(states)
                return states
            return wait_for_tasks(
                client,
                jid,
                poll_seconds=poll_seconds,
                timeout_seconds=wait_seconds,
                on_poll=downloader.look,
            )

    def announce(done: TaskDownloaded) -> None:
        emit_job_event(
            TASK_DOWNLOADED,
            jid,
            title,
            {
                "tid": done.tid,
                "frames": done.frames,
                "files": list(done.files),
                "bytes": done.bytes,
                "folder": str(done.folder),
            },
        )
        already.add(done.tid)
        logger.info(
            "job %s task %s (frames %s): %d files -> %s",
            jid,
            done.tid,
            done.frames or "?",
            len(done.files),
            done.folder,
        )

    try:
        outcome = _in_helper_thread(f"follow-{jid}", work, artifact, live, arrived, announce)
    finally:
        records.write(run_id, jid, already)
        if looked:
            clocks.write(jid, clock)
    if outcome.error is not None:
        raise outcome.error
    states = outcome.value or []
    return {
        "jid": jid,
        "tasks": len(already),
        "succeeded": sum(1 for s in states if s.status.succeeded),
        "total": len(states),
        "finished": all_finished(states),
    }


@task(
    name="download-job-outputs",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=never_retry_user_errors,
)
def download_job_outputs(
    jid: str,
    output_folder: str | None,
    scene_export: str | None,
    images: list[str],
    wait_seconds: float,
    poll_seconds: float,
    options: RunOptions,
    folder_jid: str = "",
    failed_ok: bool = False,
) -> dict[str, Any]:
    """Download the job's files and check its frames; a summary for the event and the flow.

    ``folder_jid`` and ``failed_ok`` serve a re-render (``job_outputs.fetch_outputs``): the
    files go where that job's go, and failed tasks are the caller's to render again.
    """
    logger = get_run_logger()
    scene = load_scene_images(Path(scene_export)) if scene_export else None
    artifact = cast(
        UUID,
        create_progress_artifact(
            progress=0.0, key="download-progress", description=f"Downloading job {jid}"
        ),
    )
    live: dict[str, DownloadStats] = {}

    def seen(stats: DownloadStats) -> None:
        live["stats"] = stats  # the listing's totals first, then the transfer's own counters

    def work() -> JobOutputs:
        with client_for(options) as client, Md5Cache(get_settings().md5_cache_path) as cache:
            return fetch_outputs(
                client,
                jid,
                Path(output_folder) if output_folder else None,
                scene=scene,
                images=images,
                wait_seconds=wait_seconds,
                poll_seconds=poll_seconds,
                on_listed=seen,
                on_progress=seen,
                cache=cache,
                folder_jid=folder_jid or None,
                failed_ok=failed_ok,
            )

    outcome = _in_helper_thread(f"download-{jid}", work, artifact, live)
    error = outcome.error
    if isinstance(error, TasksFailed):
        for line in error.log_lines():
            logger.error(line)
    if isinstance(error, FramesMissing):
        for problem in error.problems:
            logger.error(problem)
    if error is not None:
        raise error
    result = outcome.value
    assert result is not None  # the helper thread either returned or raised
    update_progress_artifact(artifact_id=artifact, progress=100.0)
    stats = result.download.stats
    logger.info(
        "job %s: %d files, %d bytes fetched, %d already on disk -> %s",
        jid,
        stats.files_done - stats.files_skipped,
        stats.bytes_fetched,
        stats.files_skipped,
        result.download.folder,
    )
    return {
        "jid": jid,
        "output_folder": str(result.download.folder),
        "files": stats.files_total,
        "bytes": stats.bytes_total,
        "bytes_fetched": stats.bytes_fetched,
        "frames": summary(result.checks),
    }
