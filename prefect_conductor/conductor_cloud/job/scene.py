"""SceneExport: what ``export_scene`` hands on to the rest of the pipeline.

The host's batch exporter (``host_export``) writes this as JSON next to the render package. It is
everything the submitter needs to know about the scene without opening it again: the images and
their frame ranges, the dependency paths and patterns, the host version, and the project's
variables. ``exporter_version`` lets a newer exporter's file be refused with a clear message rather
than misread.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

EXPORTER_VERSION = 1


class HostInfo(BaseModel):
    """The host application that wrote the scene."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="jobs", description="Host product name as Conductor lists it.")
    version: str = Field(description="Host version, for example 5.0.10.")
    platform: Literal["linux", "windows"] = Field(
        default="linux", description="Platform of the render nodes' host package."
    )


class ImageExport(BaseModel):
    """One Image or Layer item of the scene, as the renderer will see it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="Full item path, for example project://scene/image.")
    render_to_disk: bool = Field(description="Whether the image is written to disk at all.")
    save_as: str = Field(default="", description="Output file name, with a frame pattern.")
    first_frame: int = Field(description="First frame of the image's own range.")
    last_frame: int = Field(description="Last frame of the image's own range.")
    frame_step: int = Field(default=1, ge=1, description="Step of the image's own range.")


class SceneExport(BaseModel):
    """The scene as exported for submission; written by the host, read by every later step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exporter_version: int = Field(
        default=EXPORTER_VERSION, ge=1, description="Schema version of this file."
    )
    host: HostInfo
    project_path: str = Field(description="The artist's project file the export was made from.")
    render_package: str = Field(
        description="The self-contained project file the render nodes load (<render_package>)."
    )
    images: list[ImageExport] = Field(default_factory=list)
    dependencies: list[str] = Field(
        default_factory=list,
        description="Files, folders and patterns the scene reads; expanded before upload.",
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Project variables such as PDIR and CTEMP."
    )
    config_file: str = Field(
        default="",
        description=(
            "The host's user config file the artist's session uses (empty: none). It is uploaded"
            " and handed to the renderer with -config_file, as the reference submitter does."
        ),
    )

    @field_validator("exporter_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > EXPORTER_VERSION:
            raise ValueError(
                f"was written by a newer exporter (version {value}); this submitter reads up to"
                f" version {EXPORTER_VERSION}: upgrade prefect-conductor"
            )
        return value

    def image(self, path: str) -> ImageExport | None:
        """The exported image with this item path, if the scene has it."""
        return next((image for image in self.images if image.path == path), None)
