"""A ConductorJob item's values as a ConductorJob model, and its Frames Info line.

``read_job`` is the one way the plugin turns what the artist set into the flow's parameter: any
value the model refuses becomes one line naming the attribute (``chunk_size: Input should be
greater than or equal to 1``). ``frames_info`` computes the Frames Info line with the same
planning code the flow uses (``conductor_cloud.plan``), so the host never shows a plan the
worker would not make.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from prefect_conductor.conductor_cloud.errors import FieldError, SubmitterError
from prefect_conductor.conductor_cloud.job.loaders import field_path
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.scene import HostInfo, SceneExport
from prefect_conductor.conductor_cloud.submission.plan import plan_for_job
from prefect_conductor.host_export import exporter, host_api
from prefect_conductor.host_export.attributes import (
    FIELD_KINDS,
    FRAMES_INFO_FIELDS,
    MENUS,
    decode_strings,
)


def menu_value(obj: host_api.Item, name: str) -> str | None:
    """A Refresh-filled menu's value: the remembered label (None when nothing is chosen)."""
    label = host_api.get_string(obj, MENUS[name]).strip()
    if not label:
        return None
    if name == "instance_type":
        return label.split(" ", 1)[0]
    return label


def _value(obj: host_api.Item, name: str, kind: str) -> Any:
    if kind == "bool":
        return host_api.get_bool(obj, name)
    if kind == "long":
        return host_api.get_long(obj, name)
    if kind == "string":
        text = host_api.get_string(obj, name)
        return None if name == "host_version" and not text.strip() else text
    if kind == "references":
        return host_api.get_references(obj, name)
    if kind == "strings":
        return decode_strings(name, host_api.get_strings(obj, name))
    if kind == "choice":
        return host_api.menu_choice(obj, name)
    return menu_value(obj, name)


def job_values(obj: host_api.Item, names: frozenset[str] | None = None) -> dict[str, Any]:
    """The item's values for the ConductorJob fields (or only ``names``), unvalidated."""
    return {
        name: _value(obj, name, kind)
        for name, kind in FIELD_KINDS.items()
        if names is None or name in names
    }


def as_job(values: dict[str, Any]) -> ConductorJob:
    """Validate values into a ConductorJob; the first problem is one line naming the field."""
    try:
        return ConductorJob.model_validate(values)
    except ValidationError as error:
        problems = error.errors()
        first = problems[0]
        message = first["msg"].removeprefix("Value error, ")
        more = len(problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise FieldError(field_path(tuple(first["loc"])), message + suffix) from None


def read_job(obj: host_api.Item) -> ConductorJob:
    """The item as the ConductorJob the flow will receive."""
    return as_job(job_values(obj))


def session_scene(render_package: str, project_path: str, version: str) -> SceneExport:
    """The open scene's images, without dependencies: enough to plan and check frames."""
    return SceneExport(
        host=HostInfo(version=version),
        project_path=project_path,
        render_package=render_package,
        images=exporter.image_exports(exporter.project_variables()),
    )


def frames_info(obj: host_api.Item) -> str:
    """The Frames Info line, or ``- reason -`` when the frames cannot be planned yet."""
    try:
        job = as_job(job_values(obj, FRAMES_INFO_FIELDS))
        scene = session_scene(render_package="", project_path="", version=exporter.host_version())
        return plan_for_job(job, scene).info
    except SubmitterError as error:
        return f"- {error} -"
