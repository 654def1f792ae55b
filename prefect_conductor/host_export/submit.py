"""The Submit button: check quickly, save the project, start a flow run, show its link.

Everything slow happens on a Prefect worker (exporting the render package, scanning and hashing
files, uploading, submitting, waiting for scouts), so Submit holds the artist's session for well
under a second: read the item, run the validation rules that need neither files nor network,
save the project, and two HTTP calls to Prefect.

The flow run gets three parameters, exactly as the ``render-submit`` flow declares them::

    {"job":     <ConductorJob as JSON: every field>,
     "scene":   {"project_path": "<the saved project>"},
     "options": {"submission_key": "<key>", "submitted_by": "<user>"}}

``scene.host_command`` and the other options are left out on purpose, so the worker's own
defaults apply (its PREFECT_CONDUCTOR_HOST_BATCH, CONDUCTOR_URL, staging folder).

**The key** (both Prefect's ``idempotency_key`` and the flow's duplicate-job guard) is the item's
full name plus a hash of the job, the scene source and the *content* of the saved project file.
A double-click saves the same scene twice, so it gives the same key and Prefect returns the
first run; any change to the job or to the scene gives a new key and a new run. The content is
hashed rather than the file's modification time because Submit saves the project every time:
the second click of a double-click would already see a new time. Submitting the very same job on
the very same scene again returns the run that was made for it, and says so.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.job.validation import (
    QUICK_RULES,
    Finding,
    ValidationReport,
    validate,
)
from prefect_conductor.host_export import catalog_source, exporter, host_api, trigger
from prefect_conductor.host_export.item import read_job, session_scene

MAX_NAME_IN_KEY = 120
TAGS = ("jobs-host",)


def saved_project() -> str:
    """The current project file; a never-saved project is an error (there is nothing to send)."""
    path = host_api.project_filename()
    if not path:
        raise UserError(
            "the project has never been saved: save it once (File > Save As), then try again"
        )
    return path


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return ""


def quick_check(job: ConductorJob, scene: SceneExport, catalog: Catalog | None) -> ValidationReport:
    """The fast rules; without a catalogue a missing project or instance type is still an error."""
    report, _ = validate(job, scene, catalog, rules=QUICK_RULES)
    findings = list(report.findings)
    if catalog is None:
        if not job.project:
            findings.insert(0, Finding("error", "project", "no project chosen: press Refresh"))
        if not job.instance_type:
            findings.insert(
                0, Finding("error", "instance_type", "no instance type chosen: press Refresh")
            )
    return ValidationReport(findings=tuple(findings))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def submission_key(item: str, job: ConductorJob, scene: dict[str, Any], project: Path) -> str:
    """``<item>@<hash of job, scene source and the saved project's bytes>`` (see module doc)."""
    document = json.dumps(
        {"item": item, "job": job.model_dump(mode="json"), "scene": scene}, sort_keys=True
    )
    digest = hashlib.sha256(document.encode("utf-8"))
    digest.update(file_sha256(project).encode("ascii"))
    return f"{item[-MAX_NAME_IN_KEY:]}@{digest.hexdigest()[:40]}"


def scene_source(project_path: str) -> dict[str, Any]:
    """``{"project_path": ...}``: the worker's own host command applies."""
    return SceneSource(project_path=project_path).model_dump(mode="json", exclude_unset=True)


def flow_parameters(
    job: ConductorJob, scene: dict[str, Any], key: str, user: str
) -> dict[str, Any]:
    """The flow run's parameters: job, scene and options (see module doc)."""
    options = RunOptions(submission_key=key, submitted_by=user)
    return {
        "job": job.model_dump(mode="json"),
        "scene": scene,
        "options": options.model_dump(mode="json", exclude_unset=True),
    }


def submit(obj: host_api.Item) -> trigger.FlowRunLink:
    """Check, save, start the flow run, show its link; raises UserError with one line."""
    job = read_job(obj)
    project = saved_project()
    scene = session_scene(project, project, exporter.host_version())
    report = quick_check(job, scene, catalog_source.cached())
    who = f"ConductorJob {host_api.full_name(obj)}"
    for finding in (*report.warnings, *report.notices):
        host_api.log_warning(f"{who}: Submit: {finding}")
    report.raise_for_errors()
    host_api.save_project(project)
    source = scene_source(project)
    user = current_user()
    key = submission_key(host_api.full_name(obj), job, source, Path(project))
    parameters = flow_parameters(job, source, key, user)
    tags = [*TAGS, f"user:{user}"] if user else list(TAGS)
    link = trigger.start_flow_run(parameters, idempotency_key=key, tags=tags)
    if link.created:
        host_api.log_info(f"{who}: Submit: flow run {link.name} started: {link.url}")
        host_api.inform(
            f"Flow run {link.name} started.\n{link.url}\n\nA Prefect worker exports the scene,"
            " uploads the files and submits the job; follow it there.",
            "Conductor Submission",
        )
    else:
        host_api.log_info(
            f"{who}: Submit: nothing changed since flow run {link.name} was started: {link.url}"
        )
        host_api.inform(
            f"This job was already submitted, and nothing changed since:\n{link.url}",
            "Conductor Submission",
        )
    return link
