"""The pipeline's events about a Conductor job, so a studio automation can react to them.

Each names the job as its resource (``conductor.job.<jid>``, named by the job's title) and the
flow run as the related resource: ``conductor.job.submitted`` (a job posted or found by the
duplicate-job guard), ``conductor.scouts.finished`` and ``conductor.job.finished`` (with the
success/failed task counts), and ``conductor.task.downloaded`` once per task whose files are on
disk (``tasks/download.py``: the task id, its frames, its files, their bytes and the folder).
``conductor.outputs.downloaded`` is ``flows/download_outputs.py``'s.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

JOB_SUBMITTED = "conductor.job.submitted"
SCOUTS_FINISHED = "conductor.scouts.finished"
JOB_FINISHED = "conductor.job.finished"
OUTPUTS_DOWNLOADED = "conductor.outputs.downloaded"
TASK_DOWNLOADED = "conductor.task.downloaded"


def job_resource(jid: str, title: str) -> dict[str, str]:
    """The event's resource: the Conductor job, named by its title (what a trigger matches)."""
    return {"prefect.resource.id": f"conductor.job.{jid}", "prefect.resource.name": title}


def this_run() -> list[dict[str, str]]:
    """The related resource of every event: the flow run that submitted or followed the job."""
    return [
        {
            "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(flow_run.name or ""),
        }
    ]


def emit_job_event(name: str, jid: str, title: str, payload: dict[str, Any]) -> None:
    """Emit ``name`` about job ``jid``, related to this flow run."""
    emit_event(event=name, resource=job_resource(jid, title), related=this_run(), payload=payload)
