"""Frames as each task finishes: each look at the task listing downloads the tasks newly succeeded.

A :class:`TaskDownloader` is handed every look at a job's task listing (the one request a poll
makes, however many tasks are in flight). It feeds the look to an optional ``TaskClock`` and the
caller's ``on_poll``, then, for the tasks it sees succeeded that it has not downloaded yet, asks
Conductor's downloads listing for those tasks only (``POST /jobs/<jid>/downloads`` with
``{"tids": [...]}``, ciocore's ``JobDownloader``), downloads them with ``downloads.download_tasks``
(md5-checked, skip-if-same, resumable, never through a link), reports each ``downloaded`` and
tells ``on_task`` once per task. A task the listing shows succeeded but the downloads listing
does not hold yet is asked for again on the next look. ``job_outputs.fetch_outputs`` is the loop
that drives it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.transfers.downloads import (
    DEFAULT_WORKERS,
    DownloadStats,
    DownloadTask,
    ProgressCallback,
    download_tasks,
    task_folder,
)
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache


class ConductorDownloads(Protocol):
    """What downloading needs from ``ConductorClient`` (a protocol, so tests may stand in)."""

    def get_job(self, jid: str) -> dict[str, Any]: ...

    def download_pages(
        self, jid: str, tids: Sequence[str] | None = None, page_size: int = ...
    ) -> Iterable[list[DownloadTask]]: ...

    def report_download(
        self, download_id: str, status: str, bytes_downloaded: int, bytes_to_download: int
    ) -> None: ...


class ListedTask(Protocol):
    """A task as one look at the task listing shows it (``job_outputs.TaskState``)."""

    @property
    def tid(self) -> str: ...

    @property
    def frames(self) -> str: ...

    @property
    def status(self) -> TaskStatus: ...


@dataclass(frozen=True)
class TaskDownloaded:
    """One task's files are on disk, checked and reported: what a studio can start work on."""

    tid: str
    frames: str
    files: tuple[str, ...]
    """Each file's path below ``folder``, as Conductor listed it."""
    bytes: int
    folder: Path


@dataclass
class JobDownload:
    """What one download run did: the files, the tasks reported, where they went."""

    jid: str
    folder: Path
    stats: DownloadStats
    tasks: list[DownloadTask]
    reported: list[str]


def listed_downloads(
    client: ConductorDownloads,
    jid: str,
    task_count: int,
    tids: Collection[str] | None = None,
) -> list[DownloadTask]:
    """The job's download records (only ``tids``' when given), refusing a record for another job
    and an endless listing.

    A listing holds at most one record per task; pages past one more than the job's task count
    stop the walk in one line, whatever cursors the server keeps sending. With ``tids``, a record
    for a task not asked for (a server that ignored the filter) is dropped.
    """
    wanted = None if tids is None else sorted(tids)
    if wanted == []:
        return []  # an empty filter would ask for every task
    tasks: list[DownloadTask] = []
    for pages, page in enumerate(client.download_pages(jid, tids=wanted), 1):
        for task in page:
            named = task.job_id
            if not (
                named.isascii() and named.isdigit() and len(named) <= 9 and int(named) == int(jid)
            ):
                raise ServiceError(
                    f"job {jid}: Conductor's download listing holds a record for job"
                    f" {named[:40]!r}; refused"
                )
            if wanted is None or task.task_id in wanted:
                tasks.append(dataclasses.replace(task, job_id=jid))
        if len(tasks) > task_count or pages > task_count + 1:
            raise ServiceError(
                f"job {jid}: Conductor's download listing ran past the job's {task_count} tasks"
                f" ({len(tasks)} records on {pages} pages); stopped"
            )
    return tasks


def job_folder(
    client: ConductorDownloads, jid: str, output: Path | None, tasks: Sequence[DownloadTask] = ()
) -> Path:
    """Where the job's files land: ``output/<jid>``, else the server's output folder."""
    if tasks:
        return task_folder(tasks[0], output)
    output_path = str(client.get_job(jid).get("output_path") or "")
    return task_folder(DownloadTask("", jid, "", output_path, ()), output)


@dataclass
class TaskDownloader:
    """Downloads a job's tasks as looks at its task listing show them succeeded.

    ``already`` names tasks downloaded before (a resumed run's): they are not fetched or told
    again. ``on_task`` is called from a transfer thread, once per task, when its files are in
    place and it was reported ``downloaded``; ``on_poll`` and the clock get every look.
    """

    client: ConductorDownloads
    jid: str
    output: Path | None = None
    http: httpx.Client | None = None
    cache: Md5Cache | None = None
    workers: int = DEFAULT_WORKERS
    clock: TaskClock | None = None
    on_poll: Callable[[list[Any]], None] | None = None
    on_task: Callable[[TaskDownloaded], None] | None = None
    on_listed: ProgressCallback | None = None
    on_progress: ProgressCallback | None = None
    already: Collection[str] = ()
    folder_jid: str | None = None
    """Files go where this job's go (``output/<folder_jid>``): a re-render job's beside its first
    job's, in a folder named by a job id we hold."""
    now: Callable[[], float] = time.time
    stats: DownloadStats = field(default_factory=DownloadStats)
    tasks: list[DownloadTask] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    looks: int = 0

    def __post_init__(self) -> None:
        self.done |= set(self.already)

    def look(self, states: Sequence[ListedTask]) -> None:
        """One look at the task listing: clock, ``on_poll``, then the newly succeeded tasks."""
        self.looks += 1
        if self.clock is not None:
            self.clock.observe([(s.tid, s.status) for s in states], self.now())
        if self.on_poll is not None:
            self.on_poll(list(states))
        ready = [s for s in states if s.status.succeeded and s.tid not in self.done]
        if not ready:
            return
        listed = listed_downloads(self.client, self.jid, len(states), {s.tid for s in ready})
        self.fetch(listed, {s.tid: s.frames for s in ready})

    def fetch(self, listed: Sequence[DownloadTask], frames: dict[str, str] | None = None) -> None:
        """Download ``listed`` (records of this job), report and tell each task as it lands."""
        if not listed:
            return
        if self.folder_jid:
            listed = [dataclasses.replace(t, job_id=self.folder_jid) for t in listed]
        frames = frames or {}
        self.stats.add(
            files_total=sum(len(t.files) for t in listed), bytes_total=sum(t.size for t in listed)
        )
        if self.on_listed is not None:
            self.on_listed(self.stats)

        def finished(task: DownloadTask) -> None:
            self.client.report_download(task.download_id, "downloaded", task.size, 0)
            self.reported.append(task.task_id)
            self.done.add(task.task_id)
            if self.on_task is not None:
                self.on_task(
                    TaskDownloaded(
                        tid=task.task_id,
                        frames=frames.get(task.task_id, ""),
                        files=tuple(item.relative_path for item in task.files),
                        bytes=task.size,
                        folder=task_folder(task, self.output),
                    )
                )

        self.tasks.extend(listed)
        download_tasks(
            listed,
            output=self.output,
            http=self.http,
            cache=self.cache,
            workers=self.workers,
            on_progress=self.on_progress,
            on_task_done=finished,
            stats=self.stats,
        )

    def result(self) -> JobDownload:
        """What was downloaded so far, and where the job's files land."""
        folder = job_folder(self.client, self.folder_jid or self.jid, self.output, self.tasks)
        return JobDownload(
            jid=self.jid,
            folder=folder,
            stats=self.stats,
            tasks=list(self.tasks),
            reported=list(self.reported),
        )
