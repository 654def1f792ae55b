"""Upload progress in a terminal: two rich bars (files hashed, bytes uploaded) on stderr.

A CLI-side module: the Conductor domain reports progress as plain ``UploadProgress`` snapshots and
draws nothing; the Prefect UI shows the same snapshots as a progress artifact (tasks/upload_assets);
this turns them into bars for ``prefect-conductor submit`` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
)
from rich.table import Column
from rich.text import Text

from prefect_conductor.conductor_cloud.transfers.uploads import UploadProgress, describe


class DetailColumn(ProgressColumn):
    """A task's ``detail`` on one line, cut with an ellipsis when the terminal is narrow."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("detail", "")), no_wrap=True, overflow="ellipsis")


@contextmanager
def rich_progress(console: Console | None = None) -> Iterator[Callable[[UploadProgress], None]]:
    """A progress callback drawing two bars, on stderr so stdout stays clean for JSON."""
    # In an 80-column terminal the detail text is cut short, never a bar's name or percentage.
    bars = Progress(
        TextColumn("{task.description:>6}", table_column=Column(min_width=6, no_wrap=True)),
        BarColumn(bar_width=20),
        TaskProgressColumn(table_column=Column(min_width=4, no_wrap=True)),
        DetailColumn(table_column=Column(overflow="ellipsis")),
        console=console or Console(stderr=True),
    )
    hashing = bars.add_task("md5", total=None, detail="")
    uploading = bars.add_task("upload", total=None, detail="")
    drawing: list[bool] = []

    def update(progress: UploadProgress) -> None:
        if not drawing:  # drawn from the first snapshot: a run failing before it shows no bars
            bars.start()
            drawing.append(True)
        md5, upload = describe(progress)
        done = progress.files_hashed + progress.files_cached
        bars.update(hashing, total=progress.files_total, completed=done, detail=md5)
        known = progress.eta is not None
        nothing = known and not progress.bytes_to_upload  # done, not 0% of nothing
        bars.update(
            uploading,
            total=(progress.bytes_to_upload or 1) if known else None,
            completed=1 if nothing else progress.bytes_uploaded,
            detail=upload,
        )

    try:
        yield update
    finally:
        if drawing:
            bars.stop()
