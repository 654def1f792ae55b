"""From a ConductorJob and its scene to a FramePlan: which frames, which chunks, which scouts.

Kept apart from ``frames.py`` because it knows about the job and the scene, while ``frames.py``
only knows about numbers (and ``job.py`` imports it for its field checks).
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect_conductor.conductor_cloud.errors import FieldError
from prefect_conductor.conductor_cloud.job.frames import (
    MAX_FRAMES_VARIABLE,
    FrameList,
    FramePlan,
    PlanLimits,
    checked_range,
    parse_frame_spec,
    parse_scout_spec,
    plan_frames,
    resolve_scout,
)
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.scene import SceneExport


def image_frame_lists(
    job: ConductorJob, scene: SceneExport, limits: PlanLimits
) -> dict[str, FrameList]:
    """Each chosen image's own frame range, for the images the scene knows (in job order).

    Every range is bounded before any is built (``images[i]`` names the image in errors), and the
    ranges together too: distinct ranges' lengths are summed arithmetically, so five images of
    ten million frames each are refused without building one.
    """
    ranges: dict[str, range] = {}
    for index, path in enumerate(job.images):
        image = scene.image(path)
        if image is not None:
            ranges[path] = checked_range(
                image.first_frame,
                image.last_frame,
                image.frame_step,
                field=f"images[{index}]",
                max_frames=limits.max_frames,
            )
    together = sum(len(frames) for frames in set(ranges.values()))
    if together > limits.max_frames:
        raise FieldError(
            "images",
            f"the images' ranges hold {together} frames together, more than the"
            f" {limits.max_frames} allowed ({MAX_FRAMES_VARIABLE})",
        )
    return {path: FrameList.from_range(frames) for path, frames in ranges.items()}


def main_sequence(job: ConductorJob, images: Mapping[str, FrameList]) -> FrameList:
    """The union of the chosen images' ranges (custom frames are parsed in ``plan_for_job``)."""
    merged: set[int] = set()
    for frames in images.values():
        merged.update(frames)
    if not merged:
        raise FieldError("images", "no image gives any frame to render")
    return FrameList.from_iterable(merged)


def scout_frames(job: ConductorJob, frames: FrameList) -> FrameList | None:
    """The concrete scout frames when scouting is on (auto:N and fml:N resolved), else None."""
    if not job.scouting:
        return None
    return resolve_scout(parse_scout_spec(job.scout_frames, field="scout_frames"), frames)


def plan_for_job(job: ConductorJob, scene: SceneExport) -> FramePlan:
    """The whole frame plan of a job: frames, chunks, scout chunks, tiles and per-image frames.

    Without custom frames each image renders only the frames of its own range (images with
    different ranges share chunks but not frames). Custom frames are what the artist asked for, so
    every image renders all of them, as the host's own renderer would, and the images' own ranges
    are never built. Every size is bounded by the settings' limits before anything is built.
    """
    limits = PlanLimits.from_settings()
    if job.use_custom_frames:
        frames = parse_frame_spec(
            job.custom_frames, field="custom_frames", max_frames=limits.max_frames
        )
        per_image = {path: frames for path in job.images if scene.image(path) is not None}
    else:
        per_image = image_frame_lists(job, scene, limits)
        frames = main_sequence(job, per_image)
    return plan_frames(
        frames,
        job.chunk_size,
        scout=scout_frames(job, frames),
        tiles=job.tiles,
        image_frames=per_image,
        limits=limits,
    )
