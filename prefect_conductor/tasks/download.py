"""The download step of ``download-outputs``: wait, fetch, report, check, with a progress artifact.

The transfer runs in a helper thread so this task's own thread (which holds the Prefect run
context) can update the progress artifact once a second; the transfer threads never call Prefect.
A step that fails transiently (a storage host dropping connections) is retried by Prefect and
resumes: files already complete are not fetched again. Failed tasks and missing frames are not
retried: another attempt cannot render them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.downloads import DownloadStats
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    JobOutputs,
    TasksFailed,
    fetch_outputs,
)
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.output_frames import (
    FramesMissing,
    load_scene_images,
    summary,
)
from prefect_conductor.tasks.common import client_for, never_retry_user_errors

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
    outcome: dict[str, Any] = {}

    def seen(stats: DownloadStats) -> None:
        live["stats"] = stats  # the listing's totals first, then the transfer's own counters

    def work() -> None:
        try:
            with client_for(options) as client, Md5Cache(get_settings().md5_cache_path) as cache:
                outcome["result"] = fetch_outputs(
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
        except BaseException as error:  # handed to the task's thread below
            outcome["error"] = error

    worker = threading.Thread(target=work, name=f"download-{jid}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(PROGRESS_SECONDS)
        update_progress_artifact(artifact_id=artifact, progress=_percent(live.get("stats")))
    error = outcome.get("error")
    if isinstance(error, TasksFailed):
        for line in error.log_lines():
            logger.error(line)
    if isinstance(error, FramesMissing):
        for problem in error.problems:
            logger.error(problem)
    if error is not None:
        raise error
    result: JobOutputs = outcome["result"]
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
