"""Upload progress in a terminal: two rich bars (files hashed, bytes uploaded) on stderr.

A CLI-side module: the Conductor domain reports progress as plain ``UploadProgress`` snapshots and
draws nothing; the Prefect UI shows the same snapshots as a progress artifact (tasks/upload_assets);
this turns them into bars for ``prefect-conductor submit`` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from prefect_conductor.conductor_cloud.transfers.uploads import UploadProgress, describe


@contextmanager
def rich_progress(console: Console | None = None) -> Iterator[Callable[[UploadProgress], None]]:
    """A progress callback drawing two bars, on stderr so stdout stays clean for JSON."""
    bars = Progress(
        TextColumn("{task.description:>6}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console or Console(stderr=True),
    )
    hashing = bars.add_task("md5", total=None, detail="")
    uploading = bars.add_task("upload", total=None, detail="")

    def update(progress: UploadProgress) -> None:
        md5, upload = describe(progress)
        done = progress.files_hashed + progress.files_cached
        bars.update(hashing, total=progress.files_total, completed=done, detail=md5)
        bars.update(
            uploading,
            total=progress.bytes_to_upload if progress.eta is not None else None,
            completed=progress.bytes_uploaded,
            detail=upload,
        )

    with bars:
        yield update
