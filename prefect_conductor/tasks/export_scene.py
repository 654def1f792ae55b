"""export_scene: load or export the scene and stage its render package by content hash."""

from __future__ import annotations

from prefect import task

from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.transfers import staging
from prefect_conductor.tasks.common import never_retry_user_errors


@task(
    name="export-scene",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=never_retry_user_errors,
)
def export_scene(
    source: SceneSource, staging_dir: str | None = None, title: str = ""
) -> SceneExport:
    """The scene as submitted: later edits to the artist's files change nothing.

    A saved project is exported by the host's batch command in a child process; the render
    package is then staged by content hash. A failed export or a missing file is the artist's
    to fix and is not retried; an I/O error while staging (a file server blip) is, once.
    """
    return staging.export_scene(source, staging_dir, title)
