"""upload_assets: md5 (cached), ask Conductor what it lacks, upload only that, show progress.

Progress goes to a Prefect progress artifact (live in the UI, every couple of seconds) and to any
listener registered with :func:`listening`: ``prefect-conductor submit`` draws rich bars with it,
since the flow runs in the CLI's own process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.submission.payload import UploadEntry
from prefect_conductor.conductor_cloud.transfers.uploads import UploadProgress, upload_files
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.conductor_limits import conductor_slot

PROGRESS_EVERY_SECONDS = 2.0

Listener = Callable[[UploadProgress], None]
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every upload progress snapshot of runs in this process to ``listener`` meanwhile.

    Process-wide rather than a context variable: Prefect may run the task in another thread.
    """
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def _tell_listeners(progress: UploadProgress) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(progress)


@task(
    name="upload-assets",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=never_retry_user_errors,
)
def upload_assets(
    files: tuple[Path, ...], project: str | None, options: RunOptions
) -> list[UploadEntry]:
    """Upload what Conductor does not have; a re-run uploads (and hashes) nothing again."""
    logger = get_run_logger()
    artifact = cast(
        UUID, create_progress_artifact(0.0, key="upload-progress", description="Uploads")
    )
    last = {"at": 0.0}

    def report(progress: UploadProgress) -> None:
        _tell_listeners(progress)
        now = time.monotonic()
        if now - last["at"] < PROGRESS_EVERY_SECONDS:
            return
        last["at"] = now
        total = progress.bytes_to_upload or 0
        done = 100.0 * progress.bytes_uploaded / total if total else 0.0
        update_progress_artifact(artifact, min(100.0, done))

    # One studio-wide upload slot per run (conductor_limits.py), held for hashing and transfers.
    with conductor_slot("upload"), client_for(options) as client:
        result = upload_files(client, list(files), project=project, progress=report)
    update_progress_artifact(artifact, 100.0)
    logger.info(
        "Uploads: %d files, %d uploaded (%d bytes), %d bytes hashed, %.1f s",
        len(result.files),
        result.files_uploaded,
        result.bytes_uploaded,
        result.bytes_hashed,
        result.seconds,
    )
    return [UploadEntry(path=f.path, md5=f.md5, stat=dict(f.stat)) for f in result.files]
