"""ConductorJob: every attribute of the host's ConductorJob item, as one typed, described model.

This model is the single source of truth for three audiences: the host plugin builds its attribute
editor (and each attribute's hover text) from the field descriptions, the Prefect UI renders the
same descriptions in the flow-run form, and the job file loader checks YAML/JSON job files against
it. So a description names no button or gesture of one of them (the host adds its own hints), and
writes tokens in angle brackets inside backticks: the run form renders descriptions as Markdown,
which drops a bare ``<token>`` as an unknown HTML tag. ``extra="forbid"`` means a misspelt key
is an error instead of being silently dropped (the reference client drops unknown keys).

Semantic checks that need the scene or the catalogue (is the project known, are scout frames inside
the frames, ...) live in ``validation.py``; this module only checks what a value can be on its own.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from prefect_conductor.conductor_cloud.errors import FieldError, UserError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec, parse_scout_spec
from prefect_conductor.conductor_cloud.settings import (
    DEFAULT_LICENSE_SERVER,
    DEFAULT_MAX_METADATA_KEYS,
    get_settings,
)

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: "$" lets "\n" through
METADATA_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
ENV_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters a render node's environment cannot carry (NUL ends the C string, a line
break splits the variable); a tab is allowed."""
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Bidirectional overrides: U+202E makes ``exr.evil`` display as ``live.rxe`` on the dashboard."""


def unprintable(text: str) -> str | None:
    """The first character that does not belong on one line of a dashboard, as ``U+XXXX``.

    C0/C1 controls (U+0085 is a line break to some readers), line and paragraph separators
    (U+2028, U+2029) and bidirectional overrides.
    """
    for char in text:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI_CONTROLS:
            return f"U+{ord(char):04X}"
    return None


MergePolicy = Literal["append", "prepend", "exclusive"]
ScoutMode = Literal["gated", "native", "off"]
Approval = Literal["auto", "manual"]

TASK_TEMPLATE_FORMAT = (
    "sh <wrapper> --mkdir <directories> -- cnode <render_package> -image <sources>"
    " -image_frames_list <chunks> -tile_rendering <tiles> <tile_number>"
    " -config_file <config_file> -license_server {license_server} -log_width 0"
)
"""The default command, with a place for the license server (a plain word, checked by the
model). The render wrapper (uploaded with the job) creates the output folders, drops
``-tile_rendering`` for single tiles, changes into the render package's folder and runs the
host's ``cnode`` on the package's file name. See docs/render-command.md."""

LICENSE_SERVER = re.compile(r"[A-Za-z0-9_.@:-]+")  # used with fullmatch
"""A license server is one plain word (``host:port``), so it sits in a command unquoted."""


def default_task_template(license_server: str = DEFAULT_LICENSE_SERVER) -> str:
    """The default task template naming ``license_server``."""
    if not LICENSE_SERVER.fullmatch(license_server):
        raise ValueError(f"license server {license_server!r} is not host:port")
    return TASK_TEMPLATE_FORMAT.format(license_server=license_server)


DEFAULT_TASK_TEMPLATE = default_task_template()
"""The default command with Conductor's own license server."""


FORM_REQUIRED = ("images", "project", "instance_type")
"""Fields a job cannot run without, though the model gives them empty defaults (a new host item
starts empty; validation names each one left empty). The run form's schema lists them as
required, so the Prefect UI does not label them "(Optional)"."""


def _required_in_forms(schema: dict[str, Any]) -> None:
    schema["required"] = sorted({*schema.get("required", ()), *FORM_REQUIRED})


class EnvironmentVariable(BaseModel):
    """One extra environment variable for the render node, merged after the packages' own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="Variable name: letters, digits and underscores, not starting with a digit.",
        examples=["OCIO"],
    )
    value: str = Field(description="Value. Paths use forward slashes on Linux render nodes.")
    merge_policy: MergePolicy = Field(
        default="append",
        description=(
            "How the value combines with the same variable from the packages: append adds it at"
            " the end of a path list, prepend adds it at the front, exclusive replaces the value."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name_is_portable(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid variable name (letters, digits, _; not starting with a"
                " digit)"
            )
        return value

    @field_validator("value")
    @classmethod
    def _value_is_one_line(cls, value: str) -> str:
        found = ENV_VALUE_FORBIDDEN.search(value)
        if found:
            raise ValueError(
                f"must not contain U+{ord(found.group()):04X} (NUL, line breaks and other control"
                " characters cannot reach a render node's environment)"
            )
        return value


class ConductorJob(BaseModel):
    """A Conductor render job: what to render, on which machines, in which chunks.

    Defaults follow Conductor's own submitter.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        validate_default=True,
        json_schema_extra=_required_in_forms,
    )

    # general
    title: str = Field(
        default="Jobs render",
        min_length=1,
        max_length=200,
        description=(
            "The job title shown on the Conductor dashboard. The scout and full jobs share it; the"
            " full job gets a suffix."
        ),
    )
    images: list[str] = Field(
        default_factory=list,
        description=(
            "The Image or Layer items to render, by full item path (for example"
            " project://scene/image). Each must have Render To Disk on and a Save As file name."
        ),
    )
    project: str = Field(
        default="",
        description=(
            "The Conductor project the job is billed to, by name as your Conductor account lists"
            " it."
        ),
    )
    host_version: str = Field(
        default="",
        description=(
            "The Jobs version the scene was made with (for example 5.0.10); picks the matching"
            " host package when Host Package is not set."
        ),
    )

    # frames
    use_custom_frames: bool = Field(
        default=False,
        description=("Render the frames in Custom Frames instead of each image's own frame range."),
    )
    custom_frames: str = Field(
        default="1-10",
        description=(
            "Frames to render, for example 1-10, 1-100x3 or 3,8,20-25. Ranges are inclusive, x"
            " sets a step, negative frames are allowed. Frames are sorted and each is rendered"
            " once."
        ),
    )
    chunk_size: int = Field(
        default=5,
        ge=1,
        le=100_000,
        description=(
            "How many consecutive frames one task renders. Larger chunks start fewer machines;"
            " smaller chunks finish sooner."
        ),
    )
    use_scout_frames: bool = Field(
        default=False,
        description=(
            "Render the tasks that contain a scout frame first, and the rest only when they"
            " succeed (see Scout Mode)."
        ),
    )
    scout_frames: str = Field(
        default="",
        description=(
            "Scout frames: a frame spec such as 3,8, or auto:N for N evenly spaced frames, or"
            " fml:N for first, middle and last. Every task that contains a scout frame renders"
            " first."
        ),
    )
    tiles: int = Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "Split every frame into this many tiles, each rendered by its own task. 1 renders"
            " whole frames."
        ),
    )

    # machines
    instance_type: str = Field(
        default="",
        description=(
            "The machine type every task runs on (cores, memory, GPU), by name as your Conductor"
            " account lists it (for example n1-standard-8)."
        ),
    )
    preemptible: bool = Field(
        default=True,
        description=(
            "Use preemptible machines: much cheaper, but the cloud provider may stop a task;"
            " stopped tasks are retried automatically (see Retries)."
        ),
    )
    retries: int = Field(
        default=1,
        ge=0,
        le=10,
        description="How many times Conductor retries a task stopped by preemption.",
    )
    rerender_attempts: int = Field(
        default=1,
        ge=0,
        le=5,
        description=(
            "When tasks still end failed or preempted after Conductor's own retries, render"
            " only their frames again as a new job, up to this many times (each new job carries"
            " the first job's id in its metadata). 0 turns this off: a failed task ends the run"
            " Failed."
        ),
    )
    rerender_on_demand: bool = Field(
        default=True,
        description=(
            "When a task was preempted, its new job runs on non-preemptible (on-demand) machines,"
            " which cost more but are not stopped by the cloud provider."
        ),
    )
    max_instances: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Most machines the job may run at once. 0 means no limit.",
    )
    priority: int = Field(
        default=5,
        ge=1,
        le=10,
        description="Job priority on your account, 1 (lowest) to 10 (highest).",
    )
    location: str = Field(
        default="",
        max_length=128,
        description=(
            "A location tag that pairs the job with upload and download daemons at one site."
            " Leave empty unless your studio uses them."
        ),
    )

    # packages
    host_package: str = Field(
        default="",
        description=(
            "The Jobs package the render nodes run, by name (for example jobs 5.0.10 linux)."
            " Empty: the package matching Host Version."
        ),
    )
    plugin_packages: list[str] = Field(
        default_factory=list,
        description=(
            "Plugin packages to run under the host package, by name (for example"
            " redshift-jobs 3.0.62 linux)."
        ),
    )

    # environment, metadata, uploads
    environment: list[EnvironmentVariable] = Field(
        default_factory=list,
        description=(
            "Extra environment variables for the render nodes, merged after the packages'"
            " own variables."
        ),
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Free key/value labels stored with the job (shot, sequence, department), searchable"
            " on the dashboard."
        ),
    )
    extra_uploads: list[str] = Field(
        default_factory=list,
        description=(
            "Files, folders or patterns (`####`, `%04d`, `$F4`, `<UDIM>`, globs) to upload in"
            " addition to the scanned dependencies."
        ),
    )

    # task
    # The tokens are in backticks: the Prefect UI renders descriptions as Markdown and would drop
    # a bare <token> as an unknown HTML tag.
    license_server: str = Field(
        default="",
        max_length=255,
        description=(
            "The host's license server (host:port) the default task command names. Empty: the"
            " setting PREFECT_CONDUCTOR_LICENSE_SERVER, by default conductor_ilise:40500 as on"
            " Conductor's render nodes. A task template of your own names its own."
        ),
    )
    task_template: str = Field(
        default=DEFAULT_TASK_TEMPLATE,
        min_length=1,
        max_length=4000,
        description=(
            "The command each task runs. Tokens in angle brackets are replaced per task and"
            " already quoted, so never put quotes around them. Every token of Conductor's own"
            " submitter works, with or without its ct_ prefix: `<render_package>`, `<sources>`,"
            " `<chunks>`, `<chunkstart>`, `<chunkend>`, `<chunklength>`, `<tiles>`,"
            " `<tile_number>`, `<directories>`, `<temp_dir>`, `<pdir>`, `<project>`,"
            " `<instance_type>`, `<instance>`, `<job>`, `<sequence>`, `<scout>` and more; ours"
            " add `<wrapper>`, `<config_file>`, `<task>`, `<task_frames>` and `<task_scout>`."
            " The default runs the host's cnode through the render wrapper uploaded with the job."
        ),
    )

    # notifications
    notify: list[str] = Field(
        default_factory=list,
        description="Email addresses Conductor writes to when the job finishes.",
    )

    # scout gating
    scout_mode: ScoutMode = Field(
        default="gated",
        description=(
            "gated: submit the scout tasks as a job, wait for them, then submit the rest as a"
            " second job. native: one job; Conductor holds the other tasks until someone"
            " releases them on the dashboard. off: no scouting."
        ),
    )
    approval: Approval = Field(
        default="auto",
        description=(
            "After gated scouts: auto submits the rest when every scout task succeeded and the"
            " estimate is within the budget; manual always waits until someone approves it in"
            " the Prefect UI (a deployed run waits suspended; a local run stops and says how to"
            " post the rest)."
        ),
    )
    approval_timeout_minutes: Annotated[int, Field(ge=1, le=10_080)] = Field(
        default=1440,
        description="With manual approval: stop the run cleanly if nobody answers in this time.",
    )

    budget: float = Field(
        default=0,
        ge=0,
        allow_inf_nan=False,
        description=(
            "The most the full job may cost, in the currency of the studio's price table, before"
            " it waits for a person's approval after the scouts. 0 (or empty): the project's"
            " default budget, if any."
        ),
    )

    # debug
    show_tracebacks: bool = Field(
        default=False,
        description="Write full tracebacks to the host log when an action fails.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_template_names_the_license_server(cls, data: object) -> object:
        """Without a task template of its own (none, or the default one unchanged, as a host
        item holds it), the job runs the default one with its license server (the job's, else
        the setting's)."""
        if not isinstance(data, dict) or data.get("task_template") not in (
            None,
            "",
            DEFAULT_TASK_TEMPLATE,
        ):
            return data
        chosen = str(data.get("license_server") or "").strip()
        if not chosen:
            try:
                chosen = get_settings().license_server
            except UserError:  # another setting is broken: reported where it is used
                chosen = DEFAULT_LICENSE_SERVER
        if not LICENSE_SERVER.fullmatch(chosen):
            return data  # the field's own check names the problem
        return {**data, "task_template": default_task_template(chosen)}

    @field_validator("budget", mode="before")
    @classmethod
    def _blank_budget_is_none(cls, value: object) -> object:
        """An empty text field (the host's, a job file's) means no budget of the job's own."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0
        return value

    @field_validator("license_server")
    @classmethod
    def _license_server_is_one_word(cls, value: str) -> str:
        if value and not LICENSE_SERVER.fullmatch(value):
            raise ValueError("must be host:port (letters, digits, '.', '_', '-', '@', ':')")
        return value

    @field_validator("project", "host_version", "instance_type", "host_package", mode="before")
    @classmethod
    def _none_is_unset(cls, value: object) -> object:
        """None (a host menu with nothing chosen) means unset, as "" does; the run form shows a
        plain text box rather than a nullable toggle."""
        return "" if value is None else value

    @field_validator("title", "location")
    @classmethod
    def _title_is_printable(cls, value: str) -> str:
        if CONTROL_CHARS.search(value):
            raise ValueError("must not contain control characters or line breaks")
        char = unprintable(value)
        if char:
            raise ValueError(f"must not contain {char} (a line break or a text-direction control)")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_yes_no(cls, value: object, info: ValidationInfo) -> object:
        """``chunk_size: yes`` is YAML for True, which a lax int would read as 1."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation is int:
            raise ValueError("must be a whole number, not yes/no or true/false")
        return value

    @field_validator("custom_frames", "scout_frames")
    @classmethod
    def _frames_parse(cls, value: str, info: ValidationInfo) -> str:
        """Frame specs parse as Conductor reads them (scout frames also take auto:N, fml:N)."""
        parse = parse_frame_spec if info.field_name == "custom_frames" else parse_scout_spec
        if value:
            try:
                parse(value, field=info.field_name or "frames")
            except FieldError as error:
                raise ValueError(error.reason) from None
        return value

    @field_validator("images", "plugin_packages", "extra_uploads", "notify")
    @classmethod
    def _no_blank_entries(cls, value: list[str]) -> list[str]:
        cleaned = [item.strip() for item in value]
        if any(not item for item in cleaned):
            raise ValueError("must not contain empty entries")
        return cleaned

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        try:
            most = get_settings().max_metadata_keys
        except UserError:  # another setting is broken: reported where it is used, not here
            most = DEFAULT_MAX_METADATA_KEYS
        if len(value) > most:
            raise ValueError(
                f"{len(value)} keys, more than {most} (PREFECT_CONDUCTOR_MAX_METADATA_KEYS)"
            )
        for key, item in value.items():
            if not METADATA_KEY.fullmatch(key):
                raise ValueError(f"key {key!r} must be 1-64 letters, digits, '_', '.' or '-'")
            if len(item) > 1024:
                raise ValueError(f"value of {key!r} is longer than 1024 characters")
        return value

    def as_run_parameter(self) -> dict[str, Any]:
        """The job as a flow-run parameter: what differs from the defaults, plus the fields the
        form requires even when empty (so the run's validation names an empty one in its words,
        rather than the server refusing the run)."""
        return {
            **self.model_dump(mode="json", include=set(FORM_REQUIRED)),
            **self.model_dump(mode="json", exclude_defaults=True),
        }

    @property
    def scouting(self) -> bool:
        """Whether scout frames take effect: switched on, a spec given, a mode other than off."""
        return self.use_scout_frames and bool(self.scout_frames) and self.scout_mode != "off"
