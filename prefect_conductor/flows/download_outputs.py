"""download_outputs: after a job renders, bring its frames home and tell the pipeline.

Deployable on its own (``deployments/prefect.yaml``: ``download-outputs/conductor``). It waits
for the job's tasks, downloads every file (resumable, md5-verified), reports each task
``downloaded`` to Conductor, checks each image's frames when a scene export is given, and emits
the Prefect event ``conductor.outputs.downloaded`` with the job as its resource, so an
automation can start the studio's next step (a commented example trigger is in the YAML).

The run fails with one line naming the job, its failed tasks and their frames (each failed
task's log tail is in the run's logs), or one log line per image with missing or empty frames.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.events import emit_event

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.transfers.job_outputs import job_id
from prefect_conductor.tasks.download import download_job_outputs

EVENT = "conductor.outputs.downloaded"


def job_resource(jid: str) -> dict[str, str]:
    """The event's resource: the Conductor job (what a trigger's ``match`` names)."""
    return {
        "prefect.resource.id": f"conductor.job.{jid}",
        "prefect.resource.name": f"Conductor job {jid}",
    }


@flow(name="download-outputs", log_prints=False, persist_result=False)
def download_outputs(
    jid: str,
    output_folder: str | None = None,
    scene_export: str | None = None,
    images: list[str] | None = None,
    wait_minutes: float = 1440.0,
    poll_seconds: float = 30.0,
    options: RunOptions = RunOptions(),  # noqa: B008
) -> dict[str, Any]:
    """Download job ``jid`` into ``output_folder``/<jid> (empty: the job's own output folder).

    ``scene_export`` (the JSON the host wrote) turns on the frame check; ``images`` limits it to
    those item paths. ``wait_minutes`` is how long to wait for tasks still rendering.
    """
    job = job_id(jid)
    summary = download_job_outputs(
        job,
        output_folder,
        scene_export,
        list(images or []),
        wait_minutes * 60.0,
        poll_seconds,
        options,
    )
    event = emit_event(
        event=EVENT,
        resource=job_resource(job),
        payload={
            "output_folder": summary["output_folder"],
            "files": summary["files"],
            "bytes": summary["bytes"],
            "frames": summary["frames"],
        },
    )
    get_run_logger().info("Emitted %s for job %s", EVENT, job)
    return {**summary, "event_id": str(event.id) if event is not None else None}
