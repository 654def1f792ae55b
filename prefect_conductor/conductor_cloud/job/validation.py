"""Validation rules: every finding names a field and has a severity (error, warning, notice).

Errors stop a submission and are never retried; warnings and notices are shown (in the host, the
CLI and the flow's validation artifact) and the submission goes on. Each rule is a small function
over a :class:`ValidationContext`; a rule that crashes becomes a warning about itself instead of
blocking the artist (the reference plugin learned that the hard way).

The rules mirror the reference submitter's and add what it lacks: images missing from the scene,
outputs without a common folder, scout frames outside the frames, unknown catalogue entries,
environment conflicts, template tokens, e-mail addresses and instance-type/host platform clashes.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefect_conductor.conductor_cloud.errors import UserError, ValidationFailed
from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.job.environment import merge_environment
from prefect_conductor.conductor_cloud.job.frames import FramePlan
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.packages import ResolvedPackages
from prefect_conductor.conductor_cloud.job.paths import ExpandedFiles, expand_dependencies
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.job.template import check_template
from prefect_conductor.conductor_cloud.submission.plan import plan_for_job

Severity = Literal["error", "warning", "notice"]
MAX_TASKS_BEFORE_NOTICE = 1000
EMAIL = re.compile(r"^[^@\s,;<>]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "notice": 2}


@dataclass(frozen=True)
class Finding:
    """One thing validation found, naming the field it is about."""

    severity: Severity
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """All findings of one validation, worst first."""

    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def notices(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "notice")

    @property
    def ok(self) -> bool:
        """True when nothing blocks the submission."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise ValidationFailed with the first error as its one line, and the count of others."""
        if self.errors:
            first = self.errors[0]
            more = len(self.errors) - 1
            suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
            raise ValidationFailed(f"{first.field}: {first.message}{suffix}", report=self)

    def as_rows(self) -> list[dict[str, str]]:
        """Rows for a table artifact or a CLI table."""
        return [
            {"severity": f.severity, "field": f.field, "message": f.message} for f in self.findings
        ]

    def to_text(self) -> str:
        """One line per finding; 'no problems found' when empty."""
        return "\n".join(str(f) for f in self.findings) or "no problems found"


@dataclass
class ValidationContext:
    """What rules look at. Derived parts (plan, packages, files) are computed once, lazily."""

    job: ConductorJob
    scene: SceneExport
    catalog: Catalog | None
    base_dir: Path
    plan: FramePlan | None = None
    plan_error: UserError | None = None
    resolved: ResolvedPackages | None = None
    files: ExpandedFiles | None = None
    findings: list[Finding] = field(default_factory=list)


Rule = Callable[[ValidationContext], Iterable[Finding]]


def _error(field_name: str, message: str) -> Finding:
    return Finding("error", field_name, message)


def _warning(field_name: str, message: str) -> Finding:
    return Finding("warning", field_name, message)


def _notice(field_name: str, message: str) -> Finding:
    return Finding("notice", field_name, message)


def rule_images(ctx: ValidationContext) -> Iterator[Finding]:
    """Every chosen image exists, renders to disk and has a Save As file (not a folder)."""
    if not ctx.job.images:
        yield _error("images", "no images chosen: add at least one Image or Layer to render")
        return
    for index, path in enumerate(ctx.job.images):
        where = f"images[{index}]"
        image = ctx.scene.image(path)
        if image is None:
            yield _error(where, f"{path!r} is not in the scene")
            continue
        if not image.render_to_disk:
            yield _error(where, f"{path!r} has Render To Disk off")
        if not image.save_as:
            yield _error(where, f"{path!r} has no Save As file name")
        elif image.save_as.endswith(("/", "\\")) or os.path.isdir(image.save_as):
            yield _error(where, f"{path!r} Save As {image.save_as!r} is a folder, not a file name")
        if image.last_frame < image.first_frame:
            yield _warning(
                where,
                f"{path!r} range {image.first_frame}-{image.last_frame} ends before it starts",
            )


def output_folder(scene: SceneExport, images: Iterable[str]) -> str | None:
    """The common parent folder of the chosen images' outputs, with forward slashes."""
    folders = []
    for path in images:
        image = scene.image(path)
        if image is not None and image.save_as:
            folders.append(posixpath.dirname(image.save_as.replace("\\", "/")) or ".")
    if not folders:
        return None
    try:
        common = posixpath.commonpath(folders)
    except ValueError:
        return None
    return common or None


def rule_output_folder(ctx: ValidationContext) -> Iterator[Finding]:
    """The outputs share a folder below the root, which becomes the job's output_path."""
    saved = [p for p in ctx.job.images if (i := ctx.scene.image(p)) is not None and i.save_as]
    if not saved:
        return
    common = output_folder(ctx.scene, saved)
    if common is None or common in ("/", "."):
        yield _error(
            "images",
            "the images' Save As files share no common folder; put all outputs under one folder",
        )
    elif not common.startswith("/"):
        yield _error("images", f"output folder {common!r} is not an absolute path")


def rule_frames(ctx: ValidationContext) -> Iterator[Finding]:
    """The frames parse and give at least one task; huge task counts get a notice."""
    if ctx.plan_error is not None:
        field_name = getattr(ctx.plan_error, "field", "custom_frames")
        yield _error(field_name, getattr(ctx.plan_error, "reason", str(ctx.plan_error)))
        return
    plan = ctx.plan
    if plan is None:
        return
    if len(plan.tasks) > MAX_TASKS_BEFORE_NOTICE:
        yield _notice(
            "chunk_size",
            f"{len(plan.tasks)} tasks; are you sure? A larger chunk size starts fewer machines",
        )
    if ctx.job.use_custom_frames:
        for index, path in enumerate(ctx.job.images):
            image = ctx.scene.image(path)
            if image is None:
                continue
            outside = [
                f
                for f in (plan.frames.first, plan.frames.last)
                if not image.first_frame <= f <= image.last_frame
            ]
            if outside:
                yield _warning(
                    f"images[{index}]",
                    f"custom frames {plan.frames} reach outside {path!r}'s own range"
                    f" {image.first_frame}-{image.last_frame}",
                )


def rule_scout(ctx: ValidationContext) -> Iterator[Finding]:
    """Scout frames lie inside the frames; notices where the settings have no effect."""
    job = ctx.job
    if job.use_scout_frames and not job.scout_frames:
        yield _warning("scout_frames", "Use Scout Frames is on but no scout frames are given")
    if job.use_scout_frames and job.scout_mode == "off":
        yield _notice("scout_mode", "scout mode is off, so the scout frames are ignored")
    if job.scouting and job.scout_mode == "native" and job.approval == "manual":
        yield _notice(
            "approval",
            "native scouting is approved on the Conductor dashboard; manual approval is unused",
        )
    plan = ctx.plan
    if plan is None or not job.scouting:
        return
    from prefect_conductor.conductor_cloud.job.frames import parse_scout_spec

    spec = parse_scout_spec(job.scout_frames, field="scout_frames")
    if spec.frames is not None:
        outside = [f for f in spec.frames if f not in plan.frames]
        if outside and len(outside) == len(spec.frames):
            yield _error(
                "scout_frames",
                f"none of the scout frames {spec.frames} is among the frames {plan.frames}",
            )
        elif outside:
            shown = ",".join(str(f) for f in outside[:10])
            yield _warning("scout_frames", f"scout frames {shown} are not among the frames")
    if plan.scout_chunk_indexes and len(plan.scout_chunk_indexes) == len(plan.chunks):
        yield _notice(
            "scout_frames", "every chunk contains a scout frame, so scouting holds nothing back"
        )


def rule_toggles(ctx: ValidationContext) -> Iterator[Finding]:
    """Frames typed in while their switch is off are ignored: say so rather than stay silent."""
    job = ctx.job
    if job.custom_frames and not job.use_custom_frames:
        yield _warning(
            "use_custom_frames",
            f"Custom Frames {job.custom_frames!r} are ignored because Use Custom Frames is off;"
            " the images' own frame ranges are rendered",
        )
    if job.scout_frames and not job.use_scout_frames:
        yield _warning(
            "use_scout_frames",
            f"Scout Frames {job.scout_frames!r} are ignored because Use Scout Frames is off;"
            " every frame is submitted at once",
        )


def rule_catalog(ctx: ValidationContext) -> Iterator[Finding]:
    """Project, instance type and packages exist in the catalogue and fit together."""
    job, catalog = ctx.job, ctx.catalog
    if catalog is None:
        yield _warning("project", "no catalogue: press Refresh so project and packages are checked")
        return
    if not job.project:
        yield _error("project", "no project chosen: press Refresh and pick a project")
    else:
        try:
            catalog.require_project(job.project)
        except UserError as error:
            yield _error("project", getattr(error, "reason", str(error)))
    if not job.instance_type:
        yield _error("instance_type", "no instance type chosen: press Refresh and pick one")
    else:
        try:
            instance = catalog.find_instance_type(job.instance_type)
        except UserError as error:
            yield _error("instance_type", getattr(error, "reason", str(error)))
        else:
            platform = ctx.scene.host.platform
            if instance.operating_system != platform:
                yield _error(
                    "instance_type",
                    f"{job.instance_type!r} runs {instance.operating_system}, but the host"
                    f" package is for {platform}",
                )
    try:
        ctx.resolved = catalog.package_catalog().resolve(
            job.host_package,
            job.host_version or ctx.scene.host.version,
            job.plugin_packages,
            platform=ctx.scene.host.platform,
        )
    except UserError as error:
        yield _error(getattr(error, "field", "host_package"), getattr(error, "reason", str(error)))
        return
    for note in ctx.resolved.notes:  # a fallback host match is worth a look, not a stop
        field_name, _, text = note.partition(": ")
        yield _warning(field_name or "host_package", text or note)
    try:
        merge_environment(ctx.resolved, catalog.extra_environment, job.environment)
    except UserError as error:
        yield _error(getattr(error, "field", "environment"), getattr(error, "reason", str(error)))


def rule_template(ctx: ValidationContext) -> Iterator[Finding]:
    """The task template names only known tokens."""
    try:
        check_template(ctx.job.task_template, field="task_template")
    except UserError as error:
        yield _error("task_template", getattr(error, "reason", str(error)))


def rule_notify(ctx: ValidationContext) -> Iterator[Finding]:
    """Every notification address looks like an e-mail address."""
    for index, address in enumerate(ctx.job.notify):
        if not EMAIL.match(address):
            yield _error(f"notify[{index}]", f"{address!r} is not an e-mail address")


def rule_machines(ctx: ValidationContext) -> Iterator[Finding]:
    """Settings that do nothing get a notice, so nobody is surprised."""
    if not ctx.job.preemptible and ctx.job.retries:
        yield _notice("retries", "retries apply to preempted tasks; preemptible is off")


def rule_dependencies(ctx: ValidationContext) -> Iterator[Finding]:
    """Each dependency and extra upload expands to files; a missing one is a warning."""
    found: set[Path] = set()
    warnings: list[str] = []
    plan_frames = ctx.plan.frames if ctx.plan is not None else None
    entries = [("dependencies", e) for e in ctx.scene.dependencies]
    entries += [(f"extra_uploads[{i}]", e) for i, e in enumerate(ctx.job.extra_uploads)]
    render_package = Path(ctx.scene.render_package)
    if not render_package.is_absolute():
        render_package = ctx.base_dir / render_package
    if not render_package.is_file():
        yield _error("render_package", f"render package {str(render_package)!r} does not exist")
    else:
        found.add(render_package)
    for field_name, entry in entries:
        try:
            expanded = expand_dependencies(
                [entry], base_dir=ctx.base_dir, frames=plan_frames, field=field_name
            )
        except UserError as error:
            severity = _error if field_name.startswith("extra_uploads") else _warning
            yield severity(field_name, getattr(error, "reason", str(error)))
            continue
        found.update(expanded.files)
        warnings.extend(expanded.warnings)
    for line in warnings:
        yield _warning("dependencies", line)
    ctx.files = ExpandedFiles(files=tuple(sorted(found)), warnings=tuple(warnings))


QUICK_RULES: tuple[Rule, ...] = (
    rule_images,
    rule_output_folder,
    rule_frames,
    rule_scout,
    rule_toggles,
    rule_catalog,
    rule_template,
    rule_notify,
    rule_machines,
)
"""The rules that need neither the dependency files nor the network: they run in milliseconds
(the host's Submit runs these; the flow's validate step runs them all, with the files)."""

RULES: tuple[Rule, ...] = (*QUICK_RULES, rule_dependencies)


def validate(
    job: ConductorJob,
    scene: SceneExport,
    catalog: Catalog | None,
    *,
    base_dir: Path | None = None,
    rules: Iterable[Rule] = RULES,
) -> tuple[ValidationReport, ValidationContext]:
    """Run every rule; return the report and the context holding plan, packages and files.

    ``base_dir`` anchors relative dependency paths (default: the project file's folder).
    """
    base = base_dir or Path(scene.project_path).parent
    ctx = ValidationContext(job=job, scene=scene, catalog=catalog, base_dir=base)
    try:
        ctx.plan = plan_for_job(job, scene)
    except UserError as error:
        ctx.plan_error = error
    for rule in rules:
        try:
            ctx.findings.extend(rule(ctx))
        except Exception as error:  # a broken rule must not block the artist
            ctx.findings.append(
                _warning("validation", f"rule {rule.__name__} failed: {type(error).__name__}")
            )
    ordered = sorted(ctx.findings, key=lambda f: SEVERITY_ORDER[f.severity])
    return ValidationReport(findings=tuple(ordered)), ctx
