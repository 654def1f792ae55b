"""After a job renders: wait for its tasks, download what they wrote, report it, check frames.

This is the download half of "after Submit", shared by the ``download``/``status`` commands and
the ``download-outputs`` flow, so both behave the same:

1. :func:`wait_for_tasks` reads the job's tasks until every one has finished (or time is up),
   one request per look however many tasks are in flight;
2. each look goes to a ``task_downloads.TaskDownloader``, which downloads the tasks it shows newly
   succeeded (only those asked of Conductor's downloads listing) with ``downloads.download_tasks``
   (skip-if-same-md5, verified, resumable) and reports each ``downloaded`` with
   ``POST /downloads/status``, so a task's frames are on disk minutes before the job ends;
3. :func:`raise_for_failed_tasks` turns failed or killed tasks into one line naming the job, the
   tasks and their frames, carrying the last lines of each failed task's log (``get_log_file``);
4. ``output_frames.check_job_frames`` compares what landed on disk with what each image should
   have written, from the task commands and the scene export's Save As patterns.

:func:`download_job` fetches everything listed for a job at once (a job already finished).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.transfers.downloads import (
    DEFAULT_WORKERS,
    DownloadStats,
    ProgressCallback,
)
from prefect_conductor.conductor_cloud.transfers.frame_check import ImageCheck
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.output_frames import (
    check_job_frames,
    raise_for_frames,
)
from prefect_conductor.conductor_cloud.transfers.task_downloads import (
    ConductorDownloads,
    JobDownload,
    TaskDownloaded,
    TaskDownloader,
    listed_downloads,
)

LOG_TAIL_LINES = 5
"""How many of a failed task's last log lines a failure report carries."""
MAX_POLL_SECONDS = 60.0
"""The longest interval between two looks at a job's tasks."""


class ConductorJobs(ConductorDownloads, Protocol):
    """What this module needs from ``ConductorClient`` (a protocol, so tests may stand in)."""

    def get_tasks(self, jid: str) -> list[dict[str, Any]]: ...

    def task_log(self, jid: str, tid: str) -> list[str]: ...


class JobNotFinished(ServiceError):
    """Some tasks were still rendering when the wait ended; running again picks them up."""

    exit_code = 5
    transient = False


class TasksFailed(ServiceError):
    """Tasks of the job failed, were killed or were left preempted: one line, plus each failed
    task's log tail."""

    exit_code = 4
    transient = False

    def __init__(self, message: str, logs: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.logs = {tid: list(lines) for tid, lines in (logs or {}).items()}

    def log_lines(self) -> list[str]:
        """``task 001: <line>`` for the tail of each failed task's log."""
        return [f"task {tid}: {line}" for tid, lines in self.logs.items() for line in lines]


@dataclass(frozen=True)
class TaskState:
    """One task as the task listing shows it."""

    tid: str
    frames: str
    status: TaskStatus
    command: str = field(default="", repr=False)
    word: str = field(default="", repr=False)
    """The status as Conductor wrote it: names a word :class:`TaskStatus` does not list."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TaskState:
        return cls(
            tid=str(record.get("taskLabel") or record.get("tid") or ""),
            frames=str(record.get("frames") or ""),
            status=TaskStatus.parse(record.get("status")),
            command=str(record.get("command") or ""),
            word=str(record.get("status") or ""),
        )


def job_id(text: str, field: str = "jid") -> str:
    """A job id as Conductor writes it (``42`` -> ``00042``); UserError naming ``field``."""
    clean = str(text).strip()
    if not (clean.isascii() and clean.isdigit() and len(clean) <= 9):
        raise UserError(
            f"{field}: {str(text)[:40]!r} is not a Conductor job id (digits, e.g. 00042)"
        )
    return f"{int(clean):05d}"


def listed_tasks(client: ConductorJobs, jid: str) -> list[TaskState]:
    """The job's tasks in task order; none while Conductor lists none for it (yet)."""
    return sorted((TaskState.from_record(r) for r in client.get_tasks(jid)), key=lambda t: t.tid)


def task_states(client: ConductorJobs, jid: str) -> list[TaskState]:
    """The job's tasks in task order; a job with no tasks is an unknown job (one line)."""
    states = listed_tasks(client, jid)
    if not states:
        raise _no_tasks(jid)
    return states


def _no_tasks(jid: str) -> UserError:
    return UserError(f"job {jid}: Conductor lists no tasks for it (check the job id)")


def all_finished(states: Sequence[TaskState]) -> bool:
    """Every task has finished. A job with no tasks listed has not: Conductor may list a job's
    tasks a moment after it was posted, so an empty listing is "not yet", never "done"."""
    return bool(states) and all(s.status.finished for s in states)


def wait_for_tasks(
    client: ConductorJobs,
    jid: str,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    on_poll: Callable[[list[TaskState]], None] | None = None,
) -> list[TaskState]:
    """The job's tasks once all have finished: the one wait for a job's tasks.

    ``timeout_seconds`` 0 looks once. While time is left, an empty listing is waited out like
    open tasks; when time is up, a job still without tasks is a :class:`UserError` (check the job
    id) and one with open tasks :class:`JobNotFinished`. The interval grows by half up to a minute
    while no task changes state, and starts over from ``poll_seconds`` when one does.
    """
    deadline = time.monotonic() + timeout_seconds
    interval = poll_seconds
    seen: list[tuple[str, TaskStatus]] = []
    while True:
        states = listed_tasks(client, jid)
        if on_poll is not None:
            on_poll(states)
        if all_finished(states):
            return states
        now = [(s.tid, s.status) for s in states]
        if now != seen:
            interval, seen = poll_seconds, now
        left = deadline - time.monotonic()
        if left <= 0:
            if not states:
                raise _no_tasks(jid)
            waiting = [s for s in states if not s.status.finished]
            words = sorted({s.word or str(s.status) for s in waiting})
            raise JobNotFinished(
                f"job {jid}: {len(waiting)} of {len(states)} tasks not finished"
                f" ({', '.join(words)}); run again when they are"
            )
        sleep(min(interval, left))
        interval = min(MAX_POLL_SECONDS, interval * 1.5)


def raise_for_failed_tasks(client: ConductorJobs, jid: str, states: Sequence[TaskState]) -> None:
    """:class:`TasksFailed` naming the job, its failed, killed or preempted tasks (each with its
    word) and their frames.

    The last :data:`LOG_TAIL_LINES` lines of each failed task's log ride along (``log_lines``);
    a log that cannot be read is said so in its place rather than hiding the failure.
    """
    line = not_rendered_message(jid, states)
    if line is None:
        return
    logs = {
        state.tid: log_tail(client, jid, state.tid)
        for state in states
        if state.status is TaskStatus.FAILED
    }
    raise TasksFailed(line, logs)


def log_tail(client: ConductorJobs, jid: str, tid: str) -> list[str]:
    """The last :data:`LOG_TAIL_LINES` lines of a task's log, or one line saying it could not be
    read (a failure report never hides the failure for want of its log)."""
    try:
        return client.task_log(jid, tid)[-LOG_TAIL_LINES:]
    except ServiceError as error:
        return [f"(log unavailable: {error})"]


def not_rendered_message(jid: str, states: Sequence[TaskState]) -> str | None:
    """One line naming the job and its failed, killed or preempted tasks with their frames;
    None when none is."""
    bad = [s for s in states if s.status.not_rendered]
    if not bad:
        return None
    named = ", ".join(f"{s.tid} {s.status} (frames {s.frames})" for s in bad)
    return f"job {jid}: {len(bad)} of {len(states)} tasks did not render: {named}"


def download_job(
    client: ConductorJobs,
    jid: str,
    output: Path | None = None,
    *,
    http: httpx.Client | None = None,
    cache: Md5Cache | None = None,
    workers: int = DEFAULT_WORKERS,
    on_progress: ProgressCallback | None = None,
    on_listed: Callable[[DownloadStats], None] | None = None,
    task_count: int | None = None,
) -> JobDownload:
    """Download every file Conductor lists for ``jid`` now and report each task ``downloaded``.

    ``output`` replaces the server's folder with ``output/<jid>`` (``downloads.task_folder``).
    The listing is read in full first, so the progress bar knows the total; ``on_listed`` gets
    the stats with the totals. A file already on disk with the same md5 is not fetched. The
    listing is bounded by the job's ``task_count`` (read from Conductor when not given).
    """
    count = len(client.get_tasks(jid)) if task_count is None else task_count
    downloader = TaskDownloader(
        client,
        jid,
        output,
        http=http,
        cache=cache,
        workers=workers,
        on_listed=on_listed,
        on_progress=on_progress,
    )
    downloader.fetch(listed_downloads(client, jid, count))
    return downloader.result()


@dataclass
class JobOutputs:
    """A whole "after Submit" run: the tasks as last seen, the download, the frame checks."""

    states: list[TaskState]
    download: JobDownload
    checks: list[ImageCheck]


def fetch_outputs(
    client: ConductorJobs,
    jid: str,
    output: Path | None = None,
    *,
    scene: SceneExport | None = None,
    images: Sequence[str] = (),
    wait_seconds: float = 0.0,
    poll_seconds: float = 10.0,
    on_poll: Callable[[list[TaskState]], None] | None = None,
    on_listed: Callable[[DownloadStats], None] | None = None,
    on_progress: ProgressCallback | None = None,
    on_task: Callable[[TaskDownloaded], None] | None = None,
    clock: TaskClock | None = None,
    already: Collection[str] = (),
    http: httpx.Client | None = None,
    cache: Md5Cache | None = None,
    workers: int = DEFAULT_WORKERS,
    sleep: Callable[[float], None] = time.sleep,
    folder_jid: str | None = None,
    failed_ok: bool = False,
) -> JobOutputs:
    """Download each task's files as it succeeds, then fail for what did not, then check frames.

    Every look at the task listing (one request, however many tasks are in flight) goes to the
    ``clock`` and ``on_poll``; the tasks it shows succeeded are downloaded at once
    (``task_downloads.TaskDownloader``; ``on_task`` hears of each, ``already`` names tasks
    downloaded before). Once every task has finished, failed tasks raise :class:`TasksFailed`
    (with log tails) and missing frames :class:`FramesMissing`; when time is up first,
    :class:`JobNotFinished`, with the tasks that succeeded already on disk, so running again
    fetches only the new frames. ``failed_ok``: the caller renders failed tasks again, so they
    raise nothing and the frames are not checked here. ``folder_jid``: see ``TaskDownloader``.
    """
    downloader = TaskDownloader(
        client,
        jid,
        output,
        http=http,
        cache=cache,
        workers=workers,
        clock=clock,
        on_poll=on_poll,
        on_task=on_task,
        on_listed=on_listed,
        on_progress=on_progress,
        already=already,
        folder_jid=folder_jid,
    )
    states = wait_for_tasks(
        client,
        jid,
        poll_seconds=poll_seconds,
        timeout_seconds=wait_seconds,
        sleep=sleep,
        on_poll=downloader.look,
    )
    fetched = downloader.result()
    if failed_ok:
        return JobOutputs(states=states, download=fetched, checks=[])
    raise_for_failed_tasks(client, jid, states)
    checks: list[ImageCheck] = []
    if scene is not None:
        output_path = str(client.get_job(jid).get("output_path") or "")
        checks = check_job_frames(scene, states, output_path, fetched.folder, images)
        raise_for_frames(jid, checks)
    return JobOutputs(states=states, download=fetched, checks=checks)
