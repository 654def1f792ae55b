"""The Preview button: show what Submit would send, computed here, sent nowhere.

The scene is read from the open session the way the batch exporter reads it on the worker
(images, dependencies, colour files), and the payloads come from the same code the flow uses
(``conductor_cloud.submission.build_preview``): the frame plan, the validation findings, the
files to upload with their md5s (through the per-user md5 cache, so a second Preview hashes
nothing again) and the body of every ``POST jobs/``. Two things differ on the worker, and the
window says so: the render package is written there from the saved project, and the job's
metadata names the flow run.
"""

from __future__ import annotations

from prefect_conductor.conductor_cloud.errors import UserError, ValidationFailed
from prefect_conductor.conductor_cloud.job.validation import ValidationReport
from prefect_conductor.conductor_cloud.submission.prepare import Preview, build_preview
from prefect_conductor.host_export import catalog_source, exporter, host_api
from prefect_conductor.host_export.item import read_job
from prefect_conductor.host_export.submit import saved_project

TITLE = "Conductor Submission Preview"


def header(item: str, project: str) -> str:
    return (
        f"Preview of {item}: nothing has been sent.\n"
        f"The saved project {project} stands in for the render package; on Submit a Prefect"
        " worker writes the package from it, and each job's metadata names the flow run.\n"
    )


def preview(obj: host_api.Item) -> Preview:
    """Build and show the preview; validation errors are shown too, then raised as one line."""
    job = read_job(obj)
    project = saved_project()
    catalog = catalog_source.cached()
    if catalog is None:
        raise UserError("no catalogue yet: press Refresh first")
    scene = exporter.export_scene(project_path=project, render_package=project)
    top = header(host_api.full_name(obj), project)
    try:
        result = build_preview(job, scene, catalog)
    except ValidationFailed as failed:
        report = failed.report
        details = report.to_text() if isinstance(report, ValidationReport) else str(failed)
        host_api.show_text(TITLE, f"{top}\nThe job cannot be submitted yet:\n{details}")
        raise
    host_api.show_text(TITLE, f"{top}\n{result.to_text()}")
    plan = result.prepared.plan
    host_api.log_info(
        f"ConductorJob {host_api.full_name(obj)}: Preview: {plan.info}; {len(result.bodies)}"
        f" job(s), {len(result.uploads)} files to upload"
    )
    return result
