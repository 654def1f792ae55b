"""The exact JSON body of ``POST jobs/``, key for key as Conductor's own client sends it.

The body ciocore's ``conductor_submit.Submit`` sends is the contract: the same keys, the same shapes
(``notify: {"emails": [...]}``, ``autoretry_policy: {"preempted": {"max_retries": N}}`` only when
preemptible, ``tasks_data: [{"command", "frames"}]``, ``upload_files`` with base64 md5 and the
stat fields, ``upload_size``). Frame strings are canonical (never the user's text).

Scout gating decides how many jobs one submission makes:

* ``gated`` (our default): a ``scout`` job with only the tasks that contain a scout frame, and a
  ``full`` job with the rest, titled with a suffix. No task renders twice.
* ``native``: one ``full`` job carrying ``scout_frames``; Conductor holds the other tasks.
* off (or no scout frames): one ``full`` job with every task.

Paths follow the reference submitter: the task command names files as the render node sees them
(drive letter removed, ``paths.node_path``), while ``output_path`` and the upload destinations
keep the local form with its drive (``paths.local_posix_path``), because the downloader and the
uploader work on the artist's machine.

The metadata carries the submission id (``SUBMISSION_METADATA_KEY``: ``<key>:<step>``) and the
Prefect flow run, and the job title ends in the submission's tag (``[pc-<10 hex>]``, made from the
submission id), in preview as in submit: a preview has neither, so it shows the placeholders
``PREVIEW_SUBMISSION_KEY``, ``PREVIEW_SUBMISSION_TAG`` and ``PREVIEW_FLOW_RUN`` in their place and
nothing else differs.
"""

from __future__ import annotations

import datetime
import getpass
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect_conductor.conductor_cloud.api.post_record import submission_tag, tagged_title
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.job.frames import FramePlan, Task
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.packages import ResolvedPackages
from prefect_conductor.conductor_cloud.job.paths import local_posix_path, node_path
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.job.template import TemplateContext, render_command
from prefect_conductor.conductor_cloud.job.validation import output_folder
from prefect_conductor.conductor_cloud.transfers.uploads import STAT_FIELDS

Step = Literal["scout", "full"]
FULL_TITLE_SUFFIX = " [remaining frames]"
FLOW_RUN_METADATA_KEY = "prefect_flow_run"
PREVIEW_SUBMISSION_KEY = "<submission key>"
"""Shown in a preview where submit puts its submission key (the run's, or the flow run id)."""
PREVIEW_SUBMISSION_TAG = "<submission tag>"
"""Shown in a preview's job title where submit puts the submission's tag."""
PREVIEW_FLOW_RUN = "<flow run id>"
"""Shown in a preview where submit puts the Prefect flow run's id."""
TIMESTAMP_FORMAT = "%Y_%m_%d_%H_%M_%S"


@dataclass(frozen=True)
class UploadEntry:
    """A file the job needs, as it appears in ``upload_files``: path, base64 md5 and stat."""

    path: str
    md5: str
    stat: Mapping[str, float | int]

    @property
    def size(self) -> int:
        return int(self.stat.get("st_size", 0))

    def as_payload(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"md5": self.md5, "destination": local_posix_path(self.path)}
        entry.update({key: self.stat[key] for key in STAT_FIELDS if key in self.stat})
        return entry


def job_steps(job: ConductorJob, plan: FramePlan) -> dict[Step, Sequence[Task]]:
    """Which tasks each job of the submission holds, in submission order."""
    if job.scouting and job.scout_mode == "gated" and plan.scout_tasks:
        steps: dict[Step, Sequence[Task]] = {"scout": plan.scout_tasks}
        if plan.other_tasks:
            steps["full"] = plan.other_tasks
        return steps
    return {"full": plan.tasks}


def job_title(job: ConductorJob, step: Step, steps: Mapping[Step, object]) -> str:
    """The scout job keeps the title; a gated full job gets a suffix so both read apart."""
    if step == "full" and "scout" in steps:
        return f"{job.title}{FULL_TITLE_SUFFIX}"
    return job.title


def posted_title(
    job: ConductorJob, step: Step, steps: Mapping[Step, object], submission_key: str | None
) -> str:
    """The title sent: ``job_title`` with the submission's tag, by which the duplicate guard
    finds the job after a POST whose outcome is unknown (a preview shows a placeholder)."""
    tag = submission_tag(f"{submission_key}:{step}") if submission_key else PREVIEW_SUBMISSION_TAG
    return tagged_title(job_title(job, step, steps), tag)


def output_directories(scene: SceneExport, images: Sequence[str]) -> list[str]:
    """The chosen images' output folders as the render node sees them, once each, in order."""
    folders: list[str] = []
    for path in images:
        image = scene.image(path)
        if image is None or not image.save_as:
            continue
        folder = posixpath.dirname(node_path(image.save_as))
        if folder and folder not in folders:
            folders.append(folder)
    return folders


def template_context(
    job: ConductorJob, scene: SceneExport, *, instance: str = "", timestamp: str = ""
) -> TemplateContext:
    """The job-wide token values, paths as the render node sees them."""
    ctemp = scene.variables.get("CTEMP", "/tmp")
    return TemplateContext(
        render_package=node_path(scene.render_package),
        sources=tuple(job.images),
        project=job.project or "",
        instance_type=job.instance_type or "",
        job_title=job.title,
        temp_dir=posixpath.join(node_path(ctemp), "conductor"),
        pdir=node_path(scene.variables.get("PDIR", "")),
        wrapper=node_path(str(WRAPPER_PATH)),
        config_file=node_path(scene.config_file),
        directories=tuple(output_directories(scene, job.images)),
        instance=instance,
        preemptible=job.preemptible,
        retries=job.retries,
        timestamp=timestamp,
    )


def tasks_data(
    tasks: Sequence[Task], plan: FramePlan, context: TemplateContext, template: str
) -> list[dict[str, str]]:
    """One ``{"command", "frames"}`` per task; frames is the chunk's canonical spec."""
    return [
        {"command": render_command(template, task, plan, context), "frames": task.frames.spec}
        for task in tasks
    ]


COST_LABELS = ("project", "shot", "department")
"""The metadata labels a studio's cost limits on Conductor key on (docs/cost.md)."""


def cost_labels(job: ConductorJob) -> dict[str, str]:
    """``project``, ``shot`` and ``department`` as string labels, so a studio can hold the same
    budget on Conductor's side with its cost limits.

    ``project`` is the job's Conductor project; ``shot`` and ``department`` are the job's own
    metadata labels of those names (which win, in :func:`job_metadata`), else the title's first
    and second words (the house naming, ``shot010 lighting v012``). A label the title cannot give
    is left out.
    """
    words = job.title.split()
    derived = {
        "project": job.project,
        "shot": words[0] if words else "",
        "department": words[1] if len(words) > 1 else "",
    }
    return {key: value[:1024] for key, value in derived.items() if value}


def job_metadata(
    job: ConductorJob,
    step: Step,
    *,
    submission_key: str | None,
    flow_run_id: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The cost labels, the job's own labels (which win), the flow run and the submission id
    (placeholders in a preview)."""
    return {
        **cost_labels(job),
        **job.metadata,
        **(extra or {}),
        FLOW_RUN_METADATA_KEY: flow_run_id or PREVIEW_FLOW_RUN,
        SUBMISSION_METADATA_KEY: f"{submission_key or PREVIEW_SUBMISSION_KEY}:{step}",
    }


def build_payload(
    *,
    job: ConductorJob,
    scene: SceneExport,
    plan: FramePlan,
    step: Step,
    steps: Mapping[Step, Sequence[Task]],
    packages: ResolvedPackages,
    environment: Mapping[str, str],
    uploads: Sequence[UploadEntry],
    owner: str | None = None,
    metadata: Mapping[str, str] | None = None,
    submission_key: str | None = None,
    flow_run_id: str | None = None,
    instance: str = "",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The body of one ``POST jobs/`` for ``step``; pure, so preview and submit agree exactly.

    Only ciocore's payload keys are sent. ``submission_key`` and ``flow_run_id`` are None in a
    preview, which then shows the PREVIEW_ placeholders where submit puts the real values.
    """
    native_scout = job.scouting and job.scout_mode == "native"
    stamp = timestamp or datetime.datetime.now().strftime(TIMESTAMP_FORMAT)
    context = template_context(job, scene, instance=instance, timestamp=stamp)
    output = output_folder(scene, job.images) or ""
    payload: dict[str, Any] = {
        "instance_type": job.instance_type,
        "project": job.project,
        "tasks_data": tasks_data(steps[step], plan, context, job.task_template),
        "output_path": local_posix_path(output),
        "autoretry_policy": (
            {"preempted": {"max_retries": job.retries}} if job.preemptible and job.retries else {}
        ),
        "docker_image": "",
        "environment": dict(environment),
        "job_title": posted_title(job, step, steps, submission_key),
        "local_upload": True,
        "location": job.location,
        "preemptible": job.preemptible,
        "metadata": job_metadata(
            job, step, submission_key=submission_key, flow_run_id=flow_run_id, extra=metadata
        ),
        "priority": job.priority,
        "scout_frames": ",".join(str(f) for f in plan.scout_frames) if native_scout else "",
        "software_package_ids": packages.ids,
        "max_instances": job.max_instances,
        "chunk_size": job.chunk_size,
        "owner": owner or getpass.getuser(),
        "notify": {"emails": list(job.notify)},
        "upload_files": [entry.as_payload() for entry in uploads],
        "upload_size": sum(entry.size for entry in uploads),
    }
    return payload
