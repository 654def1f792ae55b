"""Which frames a job should have written, and whether they are on disk.

A job records which images a task renders and which frames each gets only in the task command
(``-image A B -image_frames_list F G``, see docs/render-command.md): the payload keeps ciocore's
keys, so no Save As travels with it. :func:`rendered_images` reads the command; the scene
export's Save As patterns say where each frame lands; ``frame_check`` looks on disk. The
sandbox's stand-in renderer uses the same reading, so the two cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.transfers.frame_check import (
    ImageCheck,
    check_image,
    frame_ranges,
    image_name,
    relocate,
)

_HOST_PART = re.compile(r"^(-?\d+)(?::(-?\d+)(?:%(\d+))?)?$")


class RenderedTask(Protocol):
    """A task as far as the frame check cares: its command and its frames spec."""

    @property
    def command(self) -> str: ...

    @property
    def frames(self) -> str: ...


class FramesMissing(ServiceError):
    """Downloaded, but some images lack frames (or have empty ones); ``problems`` lists them.
    Exits as a job that did not render everything does."""

    exit_code = 4
    transient = False

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


def host_frames(spec: str) -> tuple[int, ...]:
    """The frames of one ``-image_frames_list`` word (``1:9%2;22:25``); ValueError otherwise."""
    frames: list[int] = []
    for part in filter(None, spec.split(";")):
        match = _HOST_PART.match(part.strip())
        if match is None:
            raise ValueError(f"not a host frame list: {spec[:40]!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3) or 1)
        if step < 1 or last < first or (last - first) // step > 1_000_000:
            raise ValueError(f"not a host frame list: {spec[:40]!r}")
        frames.extend(range(first, last + 1, step))
    return tuple(frames)


def rendered_images(command: str) -> list[tuple[str, tuple[int, ...]]]:
    """``[(item path, frames)]`` the command renders, from ``-image A B -image_frames_list F G``.

    Empty when the command names no images (a custom template): the caller then falls back to
    the task's frames for every image it knows. Unreadable frame words count as no frames.
    """
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    if "-image" not in words:
        return []
    start = words.index("-image") + 1
    images: list[str] = []
    for word in words[start:]:
        if word.startswith("-"):
            break
        images.append(word)
    frames: list[tuple[int, ...]] = [() for _ in images]
    if "-image_frames_list" in words:
        first = words.index("-image_frames_list") + 1
        for index, word in enumerate(words[first : first + len(images)]):
            try:
                frames[index] = host_frames(word)
            except ValueError:
                frames[index] = ()
    return list(zip(images, frames, strict=True))


def task_frames(state: RenderedTask) -> tuple[int, ...]:
    """A task's own frames (its ``frames`` spec), for commands that name no images."""
    try:
        return tuple(parse_frame_spec(state.frames, field="frames"))
    except ValueError:
        return ()


def expected_frames(
    states: Iterable[RenderedTask], known: Iterable[str]
) -> dict[str, tuple[int, ...]]:
    """Each image's frames across the job's tasks (``known`` images when a command names none)."""
    wanted: dict[str, set[int]] = {}
    for state in states:
        named = rendered_images(state.command)
        if not named:
            named = [(path, task_frames(state)) for path in known]
        for path, frames in named:
            wanted.setdefault(path, set()).update(frames)
    return {path: tuple(sorted(frames)) for path, frames in wanted.items()}


def check_job_frames(
    scene: SceneExport,
    states: Sequence[RenderedTask],
    output_path: str,
    folder: Path,
    images: Sequence[str] = (),
) -> list[ImageCheck]:
    """Check each image's frames under ``folder`` (where ``output_path`` was downloaded).

    ``images`` limits the check to those item paths (default: every image the tasks render);
    one not in the scene export, or without a Save As, is a :class:`UserError` naming it.
    """
    saved = {image.path: image.save_as for image in scene.images if image.save_as}
    frames = expected_frames(states, images or saved)
    chosen = list(images) or sorted(frames)
    checks = []
    for path in chosen:
        if path not in saved:
            raise UserError(f"--images: {path} has no Save As in the scene export")
        checks.append(
            check_image(
                image_name(path), relocate(saved[path], output_path, folder), frames.get(path, ())
            )
        )
    return checks


def frame_problems(checks: Iterable[ImageCheck]) -> list[str]:
    """One line per missing or empty problem, across images."""
    return [line for check in checks for line in check.problems]


def raise_for_frames(jid: str, checks: Sequence[ImageCheck]) -> None:
    """:class:`FramesMissing` when any image lacks frames; its ``problems`` are the lines."""
    problems = frame_problems(checks)
    if problems:
        bad = [check.name for check in checks if not check.ok]
        raise FramesMissing(
            f"job {jid}: frames missing or empty in {', '.join(bad)}: {'; '.join(problems)}",
            problems,
        )


def summary(checks: Iterable[ImageCheck]) -> dict[str, Any]:
    """Per image: frames expected and found (for the event payload and artifacts)."""
    return {
        check.name: {
            "expected": len(check.expected),
            "found": len(check.expected) - len(check.missing),
            "frames": frame_ranges(check.expected) if check.expected else "",
        }
        for check in checks
    }


def load_scene_images(path: Path) -> SceneExport:
    """The scene export for a frame check: its Save As anchored at the file's folder, as the
    submitter anchored them (``loaders.load_scene`` without the upload checks: nothing is sent)."""
    from prefect_conductor.conductor_cloud.job.loaders import load_model, with_absolute_paths

    return with_absolute_paths(load_model(path, SceneExport), path.resolve().parent)
