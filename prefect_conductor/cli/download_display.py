"""What ``status`` and ``download`` show a person: a task table and a download progress bar.

Kept apart from ``cli.py`` so the commands stay a few lines each and the terminal rendering
(rich) stays out of the domain. The progress bar shows bytes, files, rate and time left; it is
fed from the transfer threads (rich's ``Progress`` is thread-safe).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.transfers.downloads import DownloadStats
from prefect_conductor.conductor_cloud.transfers.job_outputs import TaskState
from prefect_conductor.conductor_cloud.transfers.task_downloads import TaskDownloaded

_STYLE = {
    TaskStatus.SUCCESS: "green",
    TaskStatus.DOWNLOADED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.KILLED: "red",
    TaskStatus.PREEMPTED: "red",  # left preempted: not rendered, like failed
    TaskStatus.RUNNING: "cyan",
}


def task_table(jid: str, states: Sequence[TaskState]) -> Table:
    """One row per task: tid, frames, status (coloured), with a count per status in the title."""
    counts: dict[str, int] = {}
    for state in states:
        counts[str(state.status)] = counts.get(str(state.status), 0) + 1
    title = f"job {jid}: " + ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
    table = Table(title=title, title_justify="left")
    table.add_column("tid")
    table.add_column("frames")
    table.add_column("status")
    for state in states:
        style = _STYLE.get(state.status, "yellow")
        table.add_row(state.tid, state.frames, f"[{style}]{state.status}[/{style}]")
    return table


class DownloadBar:
    """A rich progress bar over a :class:`DownloadStats` (bytes, files, rate, time left)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[files]} files"),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def listed(self, stats: DownloadStats) -> None:
        """A listing is read: the totals are known (they grow as followed tasks succeed)."""
        if self.task is not None:
            self.progress.update(
                self.task,
                total=stats.bytes_total or None,
                files=f"{stats.files_done}/{stats.files_total}",
            )
            return
        self.task = self.progress.add_task(
            "download", total=stats.bytes_total or None, files=f"0/{stats.files_total}"
        )

    def update(self, stats: DownloadStats) -> None:
        if self.task is not None:
            self.progress.update(
                self.task,
                completed=stats.bytes_done,
                files=f"{stats.files_done}/{stats.files_total}",
            )


@contextmanager
def download_bar(console: Console) -> Iterator[DownloadBar]:
    """A live :class:`DownloadBar` for the duration of the block."""
    bar = DownloadBar(console)
    with bar.progress:
        yield bar


def summary_line(stats: DownloadStats) -> str:
    """``12 files, 3.1 MB fetched; 4 already on disk (skipped); 1 fetched again``."""
    fetched = stats.files_done - stats.files_skipped
    line = f"{fetched} files, {stats.bytes_fetched} bytes fetched"
    line += f"; {stats.files_skipped} already on disk (skipped)"
    if stats.refetched:
        line += f"; {stats.refetched} fetched again after a bad transfer"
    return line


def task_line(jid: str, done: TaskDownloaded) -> str:
    """``job 00042 task 003 (frames 5-6): 4 files, 123456 bytes -> /renders``."""
    frames = f" (frames {done.frames})" if done.frames else ""
    return (
        f"job {jid} task {done.tid}{frames}: {len(done.files)} files, {done.bytes} bytes"
        f" -> {done.folder}"
    )
