"""A submission from start to payloads, without Prefect: what preview shows and the flow sends.

``prepare`` validates and derives everything (plan, packages, environment, files) by running the
three steps the flow runs as tasks: ``check`` -> ``resolve_packages`` -> ``plan_job``; ``payloads``
turns a prepared submission plus the files' md5s into the exact bodies of ``POST jobs/``. The
flow's tasks call the same functions step by step, so ``preview`` prints exactly what ``submit``
sends; the only difference is the submission key and flow run id in the metadata, which a
preview shows as named placeholders (``payload.PREVIEW_SUBMISSION_KEY``/``PREVIEW_FLOW_RUN``).

The files are the scene's dependencies (every file a pattern matches), the render package, the
render wrapper the task command calls and the cleaned copy of the host's config file (an empty
one when the scene names none), which every task command passes with ``-config_file``.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.errors import FieldError
from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.job.environment import merge_environment
from prefect_conductor.conductor_cloud.job.frames import FramePlan, Task
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.packages import ResolvedPackages
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.job.render_wrapper.host_config import stage_config
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.job.validation import ValidationReport, validate
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.submission.payload import (
    TIMESTAMP_FORMAT,
    Step,
    UploadEntry,
    build_payload,
    job_steps,
)
from prefect_conductor.conductor_cloud.submission.plan import plan_for_job
from prefect_conductor.conductor_cloud.transfers.upload_roots import check_uploadable
from prefect_conductor.conductor_cloud.transfers.uploads import STAT_FIELDS, Md5Cache, hash_files


@dataclass(frozen=True)
class Prepared:
    """A validated submission: everything the payloads need except the files' md5s."""

    job: ConductorJob
    scene: SceneExport
    report: ValidationReport
    plan: FramePlan
    packages: ResolvedPackages
    environment: Mapping[str, str]
    files: tuple[Path, ...]
    steps: Mapping[Step, Sequence[Task]]
    instance: str = ""


@dataclass(frozen=True)
class Checked:
    """What the validate step hands on: the inputs that passed, the report, the files to upload
    and the chosen instance type's description (the ``<instance>`` token)."""

    job: ConductorJob
    scene: SceneExport
    report: ValidationReport
    files: tuple[Path, ...]
    instance: str = ""


@dataclass(frozen=True)
class Packages:
    """What the resolve step hands on: the render nodes' packages and merged environment."""

    resolved: ResolvedPackages
    environment: Mapping[str, str]


@dataclass(frozen=True)
class Planned:
    """What the chunk step hands on: the frame plan and which tasks each job holds."""

    plan: FramePlan
    steps: Mapping[Step, Sequence[Task]]


def check(
    job: ConductorJob, scene: SceneExport, catalog: Catalog, *, base_dir: Path | None = None
) -> Checked:
    """Run every validation rule; raise ValidationFailed (one line, report attached) on errors."""
    report, ctx = validate(job, scene, catalog, base_dir=base_dir)
    report.raise_for_errors()
    assert ctx.files is not None
    check_uploadable(
        ctx.files.files,
        scene.project_path,
        base_dir=base_dir,
        extra_roots=[ctx.base_dir / scene.render_package],
    )
    instance = next(
        (t.description for t in catalog.instance_types if t.name == job.instance_type), ""
    )
    files = job_files(ctx.files.files, scene, project_path=scene.project_path, base_dir=base_dir)
    config = stage_config(scene.config_file, get_settings().staging_dir)
    scene = scene.model_copy(update={"config_file": str(config)})
    files = tuple(sorted({*files, config}))
    return Checked(job=job, scene=scene, report=report, files=files, instance=instance)


def resolve_packages(checked: Checked, catalog: Catalog) -> Packages:
    """The host and plugin packages from the catalogue, and the environment they add up to.

    Resolved here, from the catalogue given, so a retried resolve step sees a changed catalogue.
    """
    job, scene = checked.job, checked.scene
    resolved = catalog.package_catalog().resolve(
        job.host_package,
        job.host_version or scene.host.version,
        job.plugin_packages,
        platform=scene.host.platform,
    )
    environment = merge_environment(resolved, catalog.extra_environment, job.environment)
    return Packages(resolved=resolved, environment=environment)


def plan_job(checked: Checked) -> Planned:
    """Frames into chunks and tasks, and the tasks split between the scout and full jobs."""
    plan = plan_for_job(checked.job, checked.scene)
    return Planned(plan=plan, steps=job_steps(checked.job, plan))


def assemble(checked: Checked, packages: Packages, planned: Planned) -> Prepared:
    """The three steps' results as one prepared submission (what ``payloads`` needs)."""
    return Prepared(
        job=checked.job,
        scene=checked.scene,
        report=checked.report,
        plan=planned.plan,
        packages=packages.resolved,
        environment=packages.environment,
        files=checked.files,
        steps=planned.steps,
        instance=checked.instance,
    )


def prepare(
    job: ConductorJob, scene: SceneExport, catalog: Catalog, *, base_dir: Path | None = None
) -> Prepared:
    """Validate, resolve and plan in one go (preview and the host); the flow runs them as steps."""
    checked = check(job, scene, catalog, base_dir=base_dir)
    return assemble(checked, resolve_packages(checked, catalog), plan_job(checked))


def job_files(
    dependencies: Sequence[Path],
    scene: SceneExport,
    *,
    project_path: str = "",
    base_dir: Path | None = None,
) -> tuple[Path, ...]:
    """The dependencies plus the wrapper the task command calls.

    The artist's config file is checked here but not uploaded: the job carries its cleaned copy
    (``host_config``). It may live outside the project (the host keeps it in the user's
    settings), so it is allowed by its exact path, but never when it is a protected file such as
    the API key.
    """
    if scene.config_file:
        config = Path(scene.config_file)
        if not config.is_file():
            raise FieldError("config_file", f"{config} does not exist")
        check_uploadable([config], project_path, base_dir=base_dir, extra_roots=[config])
    return tuple(sorted({*dependencies, WRAPPER_PATH}))


def stat_fields(path: Path) -> dict[str, float | int]:
    """The stat fields Conductor's client sends with each upload entry."""
    info = os.stat(path)
    return {name: getattr(info, name) for name in STAT_FIELDS}


def upload_entries(md5s: Mapping[Path, str]) -> list[UploadEntry]:
    """Upload entries in path order from a path -> base64 md5 map."""
    return [
        UploadEntry(path=str(path), md5=md5, stat=stat_fields(path))
        for path, md5 in sorted(md5s.items())
    ]


def payloads(
    prepared: Prepared,
    uploads: Sequence[UploadEntry],
    *,
    owner: str | None = None,
    metadata: Mapping[str, str] | None = None,
    submission_key: str | None = None,
    flow_run_id: str | None = None,
    timestamp: str | None = None,
) -> dict[Step, dict[str, Any]]:
    """The body of every job this submission posts, keyed by step (``scout`` first).

    ``submission_key`` and ``flow_run_id`` are what submit uses; None (a preview) shows the
    placeholders. One timestamp serves every job of the submission.
    """
    stamp = timestamp or datetime.datetime.now().strftime(TIMESTAMP_FORMAT)
    return {
        step: build_payload(
            job=prepared.job,
            scene=prepared.scene,
            plan=prepared.plan,
            step=step,
            steps=prepared.steps,
            packages=prepared.packages,
            environment=prepared.environment,
            uploads=uploads,
            owner=owner,
            metadata=metadata,
            submission_key=submission_key,
            flow_run_id=flow_run_id,
            instance=prepared.instance,
            timestamp=stamp,
        )
        for step in prepared.steps
    }


@dataclass(frozen=True)
class Preview:
    """What ``submit`` would send, and why: payloads, upload list, plan and validation."""

    prepared: Prepared
    uploads: tuple[UploadEntry, ...]
    bodies: Mapping[Step, Mapping[str, Any]]
    estimate: str = ""
    """The full job's estimate from an earlier run's frame time, when one is known."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: payloads by step, upload list, plan and findings."""
        plan = self.prepared.plan
        return {
            "info": plan.info,
            "plan": plan_rows(plan),
            "uploads": [{"path": u.path, "md5": u.md5, "size": u.size} for u in self.uploads],
            "validation": self.prepared.report.as_rows(),
            "payloads": dict(self.bodies),
            **({"estimate": self.estimate} if self.estimate else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def to_text(self) -> str:
        """A readable summary: plan, findings, each job in short and the upload table.

        ``--json`` (``to_json``) keeps every byte of the bodies; this is for reading.
        """
        from prefect_conductor.conductor_cloud.submission.preview_text import (
            human_size,
            job_text,
            upload_table_text,
        )

        plan = self.prepared.plan
        lines = [f"Frames: {plan.info}"]
        if self.estimate:
            lines.append(self.estimate)
        for step, tasks in self.prepared.steps.items():
            lines.append(f"Job '{step}': {len(tasks)} tasks")
        findings = self.prepared.report.findings
        lines.append("Validation:" if findings else "Validation: no problems found")
        lines += [f"  {finding}" for finding in findings]
        for step, body in self.bodies.items():
            lines.append(job_text(step, body))
        total = sum(u.size for u in self.uploads)
        lines.append(f"Uploads: {len(self.uploads)} files, {human_size(total)}")
        lines.append(upload_table_text(self.uploads))
        return "\n".join(lines)


def plan_rows(plan: FramePlan) -> list[dict[str, Any]]:
    """One row per task: number, frames, tile and whether it scouts (a table artifact's rows)."""
    return [
        {
            "task": task.index,
            "chunk": task.chunk_index,
            "frames": task.frames.spec,
            "tile": f"{task.tile_number}/{task.tiles}",
            "scout": task.scout,
        }
        for task in plan.tasks
    ]


def build_preview(
    job: ConductorJob,
    scene: SceneExport,
    catalog: Catalog,
    *,
    cache: Md5Cache | None = None,
    base_dir: Path | None = None,
    owner: str | None = None,
) -> Preview:
    """Everything ``submit`` would send, computed locally; nothing is sent anywhere.

    The files are hashed (through the md5 cache, so a later submit hashes nothing again) because
    the payload carries each file's md5.
    """
    prepared = prepare(job, scene, catalog, base_dir=base_dir)
    md5s = hash_files(list(prepared.files), cache=cache)
    uploads = tuple(upload_entries(md5s))
    return Preview(
        prepared=prepared, uploads=uploads, bodies=payloads(prepared, uploads, owner=owner)
    )
