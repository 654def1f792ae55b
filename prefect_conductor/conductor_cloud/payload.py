"""The exact JSON body of ``POST jobs/``, key for key as Conductor's own client sends it.

Section 2 of research/conductor-client-facts.md is the contract: the same keys, the same shapes
(``notify: {"emails": [...]}``, ``autoretry_policy: {"preempted": {"max_retries": N}}`` only when
preemptible, ``tasks_data: [{"command", "frames"}]``, ``upload_files`` with base64 md5 and the
stat fields, ``upload_size``). Frame strings are canonical (never the user's text).

Scout gating decides how many jobs one submission makes:

* ``gated`` (our default): a ``scout`` job with only the tasks that contain a scout frame, and a
  ``full`` job with the rest, titled with a suffix. No task renders twice.
* ``native``: one ``full`` job carrying ``scout_frames``; Conductor holds the other tasks.
* off (or no scout frames): one ``full`` job with every task.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prefect_conductor.conductor_cloud.frames import FramePlan, Task
from prefect_conductor.conductor_cloud.job import ConductorJob
from prefect_conductor.conductor_cloud.packages import ResolvedPackages
from prefect_conductor.conductor_cloud.scene import SceneExport
from prefect_conductor.conductor_cloud.template import TemplateContext, render_command
from prefect_conductor.conductor_cloud.uploads import STAT_FIELDS
from prefect_conductor.conductor_cloud.validation import output_folder

Step = Literal["scout", "full"]
FULL_TITLE_SUFFIX = " [remaining frames]"


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
        entry: dict[str, Any] = {"md5": self.md5, "destination": linux_path(self.path)}
        entry.update({key: self.stat[key] for key in STAT_FIELDS if key in self.stat})
        return entry


def linux_path(path: str) -> str:
    """A path as render nodes see it: forward slashes; a Windows drive letter is kept."""
    return path.replace("\\", "/")


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


def tasks_data(
    tasks: Sequence[Task], plan: FramePlan, job: ConductorJob, scene: SceneExport
) -> list[dict[str, str]]:
    """One ``{"command", "frames"}`` per task; frames is the chunk's canonical spec."""
    context = TemplateContext(
        render_package=linux_path(scene.render_package),
        sources=tuple(job.images),
        project=job.project or "",
        instance_type=job.instance_type or "",
        job_title=job.title,
        temp_dir=scene.variables.get("CTEMP", "/tmp"),
        pdir=linux_path(scene.variables.get("PDIR", "")),
    )
    return [
        {
            "command": render_command(job.task_template, task, plan, context),
            "frames": task.frames.spec,
        }
        for task in tasks
    ]


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
) -> dict[str, Any]:
    """The body of one ``POST jobs/`` for ``step``; pure, so preview and submit agree exactly."""
    native_scout = job.scouting and job.scout_mode == "native"
    payload: dict[str, Any] = {
        "instance_type": job.instance_type,
        "project": job.project,
        "tasks_data": tasks_data(steps[step], plan, job, scene),
        "output_path": output_folder(scene, job.images) or "",
        "autoretry_policy": (
            {"preempted": {"max_retries": job.retries}} if job.preemptible and job.retries else {}
        ),
        "docker_image": "",
        "environment": dict(environment),
        "job_title": job_title(job, step, steps),
        "local_upload": True,
        "location": job.location,
        "preemptible": job.preemptible,
        "metadata": {**job.metadata, **(metadata or {})},
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
