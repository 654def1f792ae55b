"""The ConductorJob item's attributes, derived from the ConductorJob model (one source of truth).

Every field of :class:`ConductorJob` becomes one attribute of the same name, with the model's
default and, as its hover text, the field's description: the text a person reads in the host is
the text the Prefect UI shows in the flow-run form. What the model cannot say is added here: the
attribute editor group, and the widget kind where the annotation alone does not decide it
(menus filled by Refresh, the reference list of images, and lists whose entries are written as
text, such as ``NAME=value`` for the environment).

Attributes that only the host needs (Frames Info, the labels remembered for the menus) are
declared here too, so the whole attribute editor is described in one place.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types

from prefect_conductor.conductor_cloud.errors import FieldError
from prefect_conductor.conductor_cloud.job.model import ConductorJob

Kind = Literal["bool", "long", "string", "strings", "references", "menu", "choice"]
"""How a field is edited: ``menu`` is filled by Refresh, ``choice`` has fixed entries."""

CLASS_NAME = "ConductorJob"
IMAGE_CLASSES = ("Image", "Layer")
NOT_SET = "- not set -"
MATCH_HOST_VERSION = "- match Host Version -"

GROUPS: dict[str, str] = {
    "title": "general",
    "images": "general",
    "project": "general",
    "host_version": "general",
    "use_custom_frames": "frames",
    "custom_frames": "frames",
    "chunk_size": "frames",
    "use_scout_frames": "frames",
    "scout_frames": "frames",
    "tiles": "frames",
    "instance_type": "machines",
    "preemptible": "machines",
    "retries": "machines",
    "rerender_attempts": "machines",
    "rerender_on_demand": "machines",
    "max_instances": "machines",
    "priority": "machines",
    "location": "machines",
    "host_package": "packages",
    "plugin_packages": "packages",
    "environment": "environment",
    "metadata": "metadata",
    "extra_uploads": "uploads",
    "license_server": "task",
    "task_template": "task",
    "notify": "notifications",
    "scout_mode": "scout",
    "approval": "scout",
    "approval_timeout_minutes": "scout",
    "budget": "scout",
    "show_tracebacks": "debug",
}
"""The attribute editor group of every ConductorJob field (a test checks none is missing)."""

MENUS: dict[str, str] = {
    "project": "last_project",
    "instance_type": "last_instance_type",
    "host_package": "last_host_package",
}
"""Menus Refresh fills, each with the hidden attribute that remembers the chosen label.

The host stores a menu's index, not its label, and entries set by Refresh are not saved with the
project, so after a reload or a new Refresh the index can point elsewhere; the label is the truth.
"""

FIRST_ENTRY: dict[str, str] = {
    "project": NOT_SET,
    "instance_type": NOT_SET,
    "host_package": MATCH_HOST_VERSION,
}

IN_THE_HOST: dict[str, str] = {
    "project": " In the host: press Refresh to fill the menu from your account.",
    "host_version": " In the host: Refresh detects it from the running application.",
    "instance_type": " In the host: press Refresh to fill the menu from your account.",
    "environment": (
        " In the host: one variable per line as NAME=value; start the line with prepend: or"
        " exclusive: to change how it merges (append: is the default)."
    ),
    "metadata": " In the host: one label per line as key=value.",
}
"""What a field's hover text adds in the host to the shared description: the host's own
buttons and text syntax, which the Prefect UI's run form does not have."""

FRAMES_INFO = "frames_info"
FRAMES_INFO_DOC = (
    "What will be rendered: scout frames, frames, chunks (one task each) and the frame spec,"
    " for example 2 Scout / 10 Frames -- 5 Chunks -- 1-10. Updates as frames, chunk size,"
    " scout frames or images change."
)
FRAMES_INFO_FIELDS = frozenset(
    {
        "images",
        "use_custom_frames",
        "custom_frames",
        "chunk_size",
        "use_scout_frames",
        "scout_frames",
        "tiles",
        "scout_mode",
    }
)
"""Changing any of these updates Frames Info."""

SHOWN_WHEN: dict[str, str] = {
    "custom_frames": "use_custom_frames",
    "scout_frames": "use_scout_frames",
    "retries": "preemptible",
    "approval_timeout_minutes": "approval",
}
"""Attributes hidden while the switch named here is off (approval: while it is auto)."""

ACTIONS: tuple[tuple[str, str], ...] = (
    (
        "refresh",
        "Sign in to Conductor if needed and fill the Project, Instance Type and Host Package menus"
        " from your account; detects the running Jobs version.",
    ),
    (
        "preview",
        "Show what Submit would send: the frame plan, the files to upload and the job payloads."
        " Nothing is sent.",
    ),
    (
        "submit",
        "Check the job, save the project and start a render-submit flow run on the Prefect"
        " server; the flow run's link is shown at once and the rest runs on a worker.",
    ),
)

ENV_LINE = re.compile(r"^(?:(append|prepend|exclusive):)?([^=]+)=(.*)$")


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of the ConductorJob item: its kind, group, default, entries and doc."""

    name: str
    kind: Kind
    group: str
    doc: str
    default: Any = None
    minimum: int | None = None
    entries: tuple[str, ...] = ()
    hidden: bool = False
    read_only: bool = False
    field: bool = True
    """False for attributes the host alone needs (they are not part of ConductorJob)."""


def _literal_values(annotation: Any) -> tuple[str, ...] | None:
    if typing.get_origin(annotation) is Literal:
        return tuple(str(value) for value in typing.get_args(annotation))
    return None


def _without_none(annotation: Any) -> Any:
    """``str | None`` -> ``str``."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        remaining = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(remaining) == 1:
            return remaining[0]
    return annotation


TEXT_FIELDS = frozenset({"budget"})
"""Number fields the host edits as text (it has no decimal widget); empty text means none."""


def _kind_of(name: str, annotation: Any) -> Kind:
    if name in TEXT_FIELDS:
        return "string"
    if name in MENUS:
        return "menu"
    if name == "images":
        return "references"
    if _literal_values(annotation) is not None:
        return "choice"
    plain = _without_none(annotation)
    if plain is bool:
        return "bool"
    if plain is int:
        return "long"
    if plain is str:
        return "string"
    if typing.get_origin(plain) in (list, dict):
        return "strings"
    raise TypeError(f"ConductorJob.{name}: no host widget for {annotation!r}")


def _minimum(metadata: Sequence[Any]) -> int | None:
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            return int(item.ge)  # type: ignore[call-overload]
    return None


def _host_default(name: str, kind: Kind, default: Any, entries: tuple[str, ...]) -> Any:
    if kind == "choice":
        return entries.index(str(default))
    if kind == "menu":
        return 0
    if kind == "strings":
        return list(encode_strings(name, default))
    if kind == "string":
        return "" if default is None or (name in TEXT_FIELDS and not default) else str(default)
    return default


def field_specs() -> tuple[AttributeSpec, ...]:
    """One spec per ConductorJob field, in the model's order."""
    specs = []
    for name, info in ConductorJob.model_fields.items():
        kind = _kind_of(name, info.annotation)
        entries = _literal_values(info.annotation) or ()
        if kind == "menu":
            entries = (FIRST_ENTRY[name],)
        default = info.get_default(call_default_factory=True)
        specs.append(
            AttributeSpec(
                name=name,
                kind=kind,
                group=GROUPS.get(name, "general"),
                doc=(info.description or "") + IN_THE_HOST.get(name, ""),
                default=_host_default(name, kind, default, entries),
                minimum=None if kind == "string" else _minimum(info.metadata),
                entries=entries,
                hidden=_hidden_by_default(name, default),
            )
        )
    return tuple(specs)


def _hidden_by_default(name: str, default: Any) -> bool:
    switch = SHOWN_WHEN.get(name)
    if switch is None:
        return False
    switch_default = ConductorJob.model_fields[switch].get_default(call_default_factory=True)
    return not shown(name, switch_default)


def shown(name: str, switch_value: Any) -> bool:
    """Whether ``name`` is visible when its switch has ``switch_value``."""
    if name == "approval_timeout_minutes":
        return switch_value == "manual"
    return bool(switch_value)


def host_only_specs() -> tuple[AttributeSpec, ...]:
    """Frames Info and the hidden remembered labels of the menus."""
    specs = [
        AttributeSpec(
            name=FRAMES_INFO,
            kind="string",
            group="frames",
            doc=FRAMES_INFO_DOC,
            default="- press Refresh -",
            read_only=True,
            field=False,
        )
    ]
    for menu, remembered in MENUS.items():
        specs.append(
            AttributeSpec(
                name=remembered,
                kind="string",
                group=GROUPS[menu],
                doc=f"The {menu.replace('_', ' ')} last chosen (kept across Refresh and reloads).",
                default="",
                hidden=True,
                field=False,
            )
        )
    return tuple(specs)


def all_specs() -> tuple[AttributeSpec, ...]:
    """Every attribute, grouped as the attribute editor shows them (Frames Info after tiles)."""
    fields = list(field_specs())
    host_only = {spec.name: spec for spec in host_only_specs()}
    ordered: list[AttributeSpec] = []
    for spec in fields:
        ordered.append(spec)
        if spec.name == "tiles":
            ordered.append(host_only.pop(FRAMES_INFO))
        if spec.name in MENUS:
            ordered.append(host_only.pop(MENUS[spec.name]))
    ordered.extend(host_only.values())
    return tuple(ordered)


# ------------------------------------------------------------------------------ text-list fields


def encode_strings(name: str, value: Any) -> tuple[str, ...]:
    """A list, dict or list of models as the lines a string-list attribute shows."""
    if name == "environment":
        lines = []
        for entry in value:
            data = entry if isinstance(entry, dict) else entry.model_dump()
            policy = data.get("merge_policy", "append")
            prefix = "" if policy == "append" else f"{policy}:"
            lines.append(f"{prefix}{data['name']}={data['value']}")
        return tuple(lines)
    if name == "metadata":
        return tuple(f"{key}={item}" for key, item in dict(value).items())
    return tuple(str(item) for item in value)


def decode_strings(name: str, lines: Sequence[str]) -> Any:
    """The lines of a string-list attribute as the model's value; a bad line names its index."""
    if name == "environment":
        variables = []
        for index, line in enumerate(lines):
            match = ENV_LINE.match(line.strip())
            if match is None or not match.group(2).strip():
                raise FieldError(
                    f"environment[{index}]",
                    f"{line!r}: write NAME=value, optionally after append:, prepend: or exclusive:",
                )
            variables.append(
                {
                    "name": match.group(2).strip(),
                    "value": match.group(3),
                    "merge_policy": match.group(1) or "append",
                }
            )
        return variables
    if name == "metadata":
        labels: dict[str, str] = {}
        for index, line in enumerate(lines):
            key, sep, item = line.partition("=")
            if not sep or not key.strip():
                raise FieldError(f"metadata[{index}]", f"{line!r}: write key=value")
            labels[key.strip()] = item.strip()
        return labels
    return [line.strip() for line in lines if line.strip()]


FIELD_KINDS: dict[str, Kind] = {spec.name: spec.kind for spec in field_specs()}
"""Each ConductorJob field's widget kind, by field name."""
