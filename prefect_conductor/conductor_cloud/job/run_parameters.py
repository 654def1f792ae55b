"""The two other flow parameters beside ConductorJob: where the scene comes from, and how to run.

Both are plain pydantic models so the host's trigger (which imports no Prefect) can build them, the
Prefect UI can render them as forms, and the server can check them against the JSON schema.
Neither ever holds a secret: credentials are named (a ConductorCredentials or Secret block), never
passed. Optional text fields default to "" rather than None, so the UI's run form shows a plain
text box, not a nullable toggle that reads 'Property is type "None"'.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prefect_conductor.conductor_cloud.settings import get_settings


def default_host_command() -> list[str]:
    """The host's batch command, from PREFECT_CONDUCTOR_HOST_BATCH (shell words) or the default."""
    import shlex

    return shlex.split(get_settings().host_batch)


class SceneSource(BaseModel):
    """Where the scene comes from: an export the host already wrote, or a saved project file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    export_path: str = Field(
        default="",
        title="Export File",
        description=(
            "Fill in this OR Saved Project, not both. A scene export JSON the host already wrote"
            " (images, dependencies, render package)."
        ),
    )
    project_path: str = Field(
        default="",
        title="Saved Project",
        description=(
            "Fill in this OR Export File, not both. A saved project file; the flow runs the host"
            " in batch mode to export it. The file itself is never written."
        ),
    )
    host_command: list[str] = Field(
        default_factory=default_host_command,
        description=(
            "The host's batch command line used with Saved Project (from"
            " PREFECT_CONDUCTOR_HOST_BATCH on the worker by default)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _none_is_unset(cls, data: object) -> object:
        """A None path (older callers) means not given, as "" does."""
        if isinstance(data, dict):
            return {k: "" if v is None and k.endswith("_path") else v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SceneSource:
        if bool(self.export_path) == bool(self.project_path):
            raise ValueError(
                "give exactly one of export_path (Export File) or project_path (Saved Project)"
            )
        return self


class RunOptions(BaseModel):
    """How a submission runs; nothing here changes what is rendered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preview: bool = Field(
        default=False,
        description=(
            "Stop before anything is uploaded or submitted; the payload is left as an artifact."
        ),
    )
    conductor_url: str = Field(
        default="",
        description="Conductor address; empty uses CONDUCTOR_URL on the worker.",
    )
    credentials_block: str = Field(
        default="",
        description=(
            "Name of a Conductor Credentials block (API key and URL) or of a Secret block holding"
            " the API key; empty uses CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH on the worker."
        ),
    )
    staging_dir: str = Field(
        default="",
        description=(
            "Where render packages are staged by content hash; empty uses a per-user folder."
        ),
    )
    submission_key: str = Field(
        default="",
        max_length=200,
        description=(
            "Names this submission for the duplicate-job guard: runs with the same key never post"
            " a second job. Empty uses the flow run's id. The host's Submit sets it."
        ),
    )
    poll_seconds: float = Field(
        default=10.0,
        ge=0.05,
        le=600,
        description=(
            "How often to ask Conductor how the scout tasks are doing (steadily: the scout tasks'"
            " times, which the cost estimate uses, are known to within it); a local run following"
            " the full job backs off to 60 s."
        ),
    )
    scout_timeout_minutes: int = Field(
        default=1440,
        ge=1,
        le=10_080,
        description="Stop waiting for scout tasks after this long; nothing more is submitted.",
    )
    submitted_by: str = Field(
        default="", max_length=128, description="Who pressed Submit (shown as the job owner)."
    )
    approved: bool = Field(
        default=False,
        description=(
            "A person has already approved this submission's full job: post it after the scouts"
            " without the budget or manual-approval gate (with the same submission key, a run"
            " re-uses the scout job it already posted)."
        ),
    )
    follow: Literal["auto", "yes", "no"] = Field(
        default="auto",
        description=(
            "After the full job is posted, wait for it to render, download its frames (and the"
            " scouts') into the job's output folder and check them; tasks that failed or were"
            " preempted are rendered again as the job's Rerender Attempts says. auto: yes when a"
            " worker runs the deployment (the run waits suspended, holding no process), no for a"
            " local run."
        ),
    )
    render_timeout_minutes: int = Field(
        default=10_080,
        ge=1,
        le=43_200,
        description="When following, stop waiting for the full job's tasks after this long.",
    )

    @field_validator("follow", mode="before")
    @classmethod
    def _follow_word(cls, value: object) -> object:
        """True/False/None (older callers, JSON booleans) mean yes/no/auto."""
        if value is None:
            return "auto"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return value

    @field_validator("conductor_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """A parameter is stored with the run: a password in the address would be stored too."""
        rest = value.partition("://")[2]
        if "@" in rest.split("/", 1)[0]:
            raise ValueError(
                "must not hold a user name or password (a run's parameters are stored); name a"
                " Conductor Credentials block instead"
            )
        return value
