"""Task command templates: ``<angle bracket>`` tokens replaced per task, values shell-quoted.

The token names are the reference submitter's, so artists' templates carry over. Every value that
comes from a person or a file (paths, item names, titles, project names) is quoted with
``shlex.quote``: a title or image name holding quotes, ``;``, ``$()``, backticks or a newline stays
one argument and cannot change what runs on the render node. Numbers are written bare. A token
that is not known is an error naming it, instead of being sent to the farm as literal text.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.frames import FramePlan, Task

TOKEN = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
OPENING = re.compile(r"<(?=[A-Za-z_])")
FRAGMENT = re.compile(r"<[^\s<>]*>?")

TOKENS: Mapping[str, str] = {
    "render_package": "The exported render package the node loads (a path).",
    "sources": "The task's image item paths, one quoted word each.",
    "chunks": "One frame list per source, in the host's start:end%step;... dialect.",
    "chunkstart": "First frame of the task's chunk.",
    "chunkend": "Last frame of the task's chunk.",
    "chunklength": "Number of frames in the task's chunk.",
    "sequence": "The task's frames as a Conductor spec, for example 1-9x2.",
    "scout": "1 when the task contains a scout frame, else 0.",
    "chunksize": "The job's chunk size.",
    "chunkcount": "How many chunks the job has.",
    "project": "The Conductor project name.",
    "instance_type": "The instance type the task runs on.",
    "tiles": "How many tiles each frame is split into.",
    "tile_number": "This task's tile, 1-based (1 when not tiling).",
    "temp_dir": "A temporary folder on the render node.",
    "pdir": "The project's folder (PDIR).",
    "job": "The job title.",
    "task": "The task's index in the job, 0-based.",
}


@dataclass(frozen=True)
class TemplateContext:
    """Job-wide values the template may use; per-task values come from the Task."""

    render_package: str
    sources: Sequence[str]
    project: str
    instance_type: str
    job_title: str
    temp_dir: str = "/tmp"
    pdir: str = ""


def template_tokens(template: str) -> list[str]:
    """The token names a template uses, in order of appearance."""
    return TOKEN.findall(template)


def check_template(template: str, field: str = "task_template") -> None:
    """Raise TemplateError naming the first unknown, malformed or unclosed token.

    A ``<`` followed by a letter or ``_`` starts a token and must close as ``<name>``; a
    half-written ``<render_package`` would otherwise reach the render node as shell input
    redirection. Shell redirects stay possible: ``> log``, ``2>&1`` and ``< input`` (with a space).
    """
    for opening in OPENING.finditer(template):
        if TOKEN.match(template, opening.start()) is not None:
            continue
        fragment = FRAGMENT.match(template, opening.start())
        shown = fragment.group(0) if fragment is not None else "<"
        if shown.endswith(">"):
            reason = f"malformed token {shown}; token names are letters, digits and _"
        else:
            reason = (
                f"unclosed token {shown}: a < before a name starts a token and needs a closing >"
                " (write '< file' with a space for a shell redirect)"
            )
        raise TemplateError(field, reason)
    for name in template_tokens(template):
        if name not in TOKENS:
            known = ", ".join(f"<{token}>" for token in TOKENS)
            raise TemplateError(field, f"unknown token <{name}>; known: {known}")


def quote(value: str) -> str:
    """One shell word, whatever the value holds."""
    return shlex.quote(value)


def task_values(task: Task, plan: FramePlan, context: TemplateContext) -> dict[str, str]:
    """Every token's replacement text for ``task``, already quoted where it came from a person.

    ``<sources>`` lists the context's images (in the context's order) that render a frame of this
    chunk, and ``<chunks>`` their frames in the same order. A plan made without per-image frames
    has none to consult, so every source then renders the whole chunk.
    """
    sources = [path for path in context.sources if path in task.image_frames]
    if not task.image_frames:
        sources = list(context.sources)
    chunks = [
        task.image_frames[path].host_spec()
        if path in task.image_frames
        else task.frames.host_spec()
        for path in sources
    ]
    return {
        "render_package": quote(context.render_package),
        "sources": " ".join(quote(path) for path in sources),
        "chunks": " ".join(quote(spec) for spec in chunks),
        "chunkstart": str(task.frames.first),
        "chunkend": str(task.frames.last),
        "chunklength": str(len(task.frames)),
        "sequence": quote(task.frames.spec),
        "scout": "1" if task.scout else "0",
        "chunksize": str(plan.chunk_size),
        "chunkcount": str(len(plan.chunks)),
        "project": quote(context.project),
        "instance_type": quote(context.instance_type),
        "tiles": str(task.tiles),
        "tile_number": str(task.tile_number),
        "temp_dir": quote(context.temp_dir),
        "pdir": quote(context.pdir),
        "job": quote(context.job_title),
        "task": str(task.index),
    }


def render_command(template: str, task: Task, plan: FramePlan, context: TemplateContext) -> str:
    """The command for one task; unknown, malformed or unclosed tokens raise TemplateError.

    Substitution is one pass, so a value that itself reads ``<project>`` is left as text.
    """
    check_template(template)
    values = task_values(task, plan, context)
    return TOKEN.sub(lambda match: values[match.group(1)], template)
