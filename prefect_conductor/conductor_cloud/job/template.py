"""Task command templates: ``<angle bracket>`` tokens replaced per task, values shell-quoted.

Every token of the reference submitter (cioclarisse / conductor.clarisse) is accepted with its
meaning, spelt either way: ``<ct_chunks>`` as the reference writes it, or ``<chunks>``. So a
studio's existing template carries over. We add a few of our own (``<wrapper>``, ``<task>``,
``<task_frames>``, ``<task_scout>``, ``<config_file>``); docs/render-command.md lists them all.

Every value that comes from a person or a file (paths, item names, titles, project names) is
quoted with ``shlex.quote``, so it stays one shell word whatever it holds. That guarantee only
holds where the template leaves the token unquoted: inside ``"..."`` or ``'...'``, after a
backslash or a ``$``, or inside backticks, the quoting would be undone and a title such as
``$(rm -rf ~)`` would run on the render node. Such templates are refused with one line naming
the field (issue 14); tokens never need quotes around them.

A token that is not known is an error naming it, instead of being sent to the farm as literal
text. A template that calls the reference's own wrapper (``ct_cnode``/``ciocnode``), which this
submitter does not upload, is refused too, pointing at ``<wrapper>``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.job.frames import FrameList, FramePlan, Task

TOKEN = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
OPENING = re.compile(r"<(?=[A-Za-z_])")
FRAGMENT = re.compile(r"<[^\s<>]*>?")
REFERENCE_PREFIX = "ct_"
REFERENCE_WRAPPERS = re.compile(r"(?<![\w.-])(ct_cnode|ciocnode)(?![\w.-])")

#: The reference submitter's tokens (without their ``ct_`` prefix), with the same meaning.
REFERENCE_TOKENS: Mapping[str, str] = {
    # submission level
    "pdir": "The project's folder (PDIR) on the render node.",
    "temp_dir": "The submitter's folder on the render node: CTEMP/conductor.",
    "timestamp": "When the payload was built, as YYYY_MM_DD_HH_MM_SS.",
    "submitter": "The ConductorJob's name; here the job title (the item name is not exported).",
    "render_package": "The exported render package the node loads (a path).",
    "project": "The Conductor project name.",
    # job level
    "scout": "The job's scout frames as a frame spec, for example 3,8 (empty without scouting).",
    "chunksize": "The job's chunk size.",
    "chunkcount": "How many chunks the job has.",
    "scoutcount": "How many scout frames the job has.",
    "sequencelength": "How many frames the job renders.",
    "sequence": "Every frame of the job as a frame spec, for example 1-10.",
    "sequencemin": "The job's first frame.",
    "sequencemax": "The job's last frame.",
    "instance_type": "The instance type the tasks run on (its name).",
    "instance": "The instance type's description (its name when the catalogue has none).",
    "tiles": "How many tiles each frame is split into.",
    "preemptible": "preemptible or non-preemptible.",
    "retries": "How many times a preempted task is retried.",
    "job": "The job title.",
    "directories": "The output folders of the job's images on the render node, one word each.",
    # task level
    "tile_number": "This task's tile, 1-based (1 when not tiling).",
    "chunks": "One frame list per source, in the host's start:end%step;... dialect.",
    "sources": "The task's image item paths, one word each.",
    "chunklength": "Number of frames in the task's chunk.",
    "chunkstart": "First frame of the task's chunk.",
    "chunkend": "Last frame of the task's chunk.",
}

#: Tokens this submitter adds.
OUR_TOKENS: Mapping[str, str] = {
    "wrapper": "The render wrapper script uploaded with the job (a path on the render node).",
    "config_file": "The host's user config file on the render node (empty when none).",
    "task": "The task's index in the job, 0-based.",
    "task_frames": "The task's frames as a frame spec, for example 1-9x2.",
    "task_scout": "1 when the task contains a scout frame, else 0.",
}

TOKENS: Mapping[str, str] = {**REFERENCE_TOKENS, **OUR_TOKENS}

#: Tokens whose value is a number or a fixed word, never text from a person or a file: they are
#: safe in any shell context, so quotes or arithmetic around them are allowed.
PLAIN_TOKENS = frozenset(
    {
        "chunksize",
        "chunkcount",
        "scoutcount",
        "sequencelength",
        "sequencemin",
        "sequencemax",
        "tiles",
        "preemptible",
        "retries",
        "tile_number",
        "chunklength",
        "chunkstart",
        "chunkend",
        "task",
        "task_scout",
    }
)


@dataclass(frozen=True)
class TemplateContext:
    """Job-wide values the template may use; per-task values come from the Task.

    Paths are given as the render node sees them (``paths.node_path``).
    """

    render_package: str
    sources: Sequence[str]
    project: str
    instance_type: str
    job_title: str
    temp_dir: str = "/tmp/conductor"
    pdir: str = ""
    wrapper: str = ""
    config_file: str = ""
    directories: Sequence[str] = field(default_factory=tuple)
    instance: str = ""
    preemptible: bool = True
    retries: int = 0
    timestamp: str = ""


def canonical(name: str) -> str:
    """The token's name without the reference's ``ct_`` prefix."""
    return name[len(REFERENCE_PREFIX) :] if name.startswith(REFERENCE_PREFIX) else name


def template_tokens(template: str) -> list[str]:
    """The token names a template uses, in order of appearance, as written."""
    return TOKEN.findall(template)


def _quoting_at(template: str) -> dict[int, str]:
    """For each token's start offset, the shell context it sits in ('' when bare).

    A small lexer of the shell's quoting: single quotes, double quotes (with backslash escapes),
    backticks, and a backslash or ``$`` right before the token. It does not follow ``$(...)``
    inside double quotes; a token there counts as quoted, which refuses rather than risks.
    Arithmetic (``((``, ``[[``) evaluates a quoted value's ``a[$(cmd)]`` and a here-document
    expands ``$(cmd)`` inside quotes, so tokens there count as unsafe too.
    """
    contexts: dict[int, str] = {}
    tokens = {match.start() for match in TOKEN.finditer(template)}
    state = ""  # "", "'", '"', "`"
    closer = ""  # "))" or "]]" while inside arithmetic or a [[ test
    heredoc = False
    index = 0
    while index < len(template):
        char = template[index]
        pair = template[index : index + 2]
        if not state:
            if closer and pair == closer:
                closer = ""
            elif not closer and pair in ("((", "[["):
                closer = "))" if pair == "((" else "]]"
            around = template[index - 1 : index] + template[index + 2 : index + 3]
            if pair == "<<" and "<" not in around:
                heredoc = True
        if index in tokens:
            previous = template[index - 1] if index else ""
            if state:
                contexts[index] = state
            elif heredoc:
                contexts[index] = "<<"
            elif closer:
                contexts[index] = closer
            elif previous == "\\":
                contexts[index] = "\\"
            elif previous == "$":
                contexts[index] = "$"
            else:
                contexts[index] = ""
        if state == "'":
            if char == "'":
                state = ""
        elif state == '"':
            if char == "\\":
                if index + 1 in tokens:
                    contexts[index + 1] = state
                index += 1
            elif char == '"':
                state = ""
        elif state == "`":
            if char == "\\":
                if index + 1 in tokens:
                    contexts[index + 1] = state
                index += 1
            elif char == "`":
                state = ""
        elif char == "\\":
            if index + 1 in tokens:
                contexts[index + 1] = "\\"
            index += 1
        elif char in "'\"`":
            state = char
        index += 1
    return contexts


QUOTING_NAMES = {
    "'": "inside single quotes",
    '"': "inside double quotes",
    "`": "inside backticks",
    "\\": "after a backslash",
    "$": "after a $",
    "<<": "in a here-document",
    "))": "inside (( ))",
    "]]": "inside [[ ]]",
}


def check_template(template: str, field: str = "task_template") -> None:
    """Raise TemplateError naming the first unknown, malformed, unclosed or quoted token.

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
        if canonical(name) not in TOKENS:
            known = ", ".join(f"<{token}>" for token in TOKENS)
            raise TemplateError(field, f"unknown token <{name}>; known: {known}")
    for start, where in _quoting_at(template).items():
        token = TOKEN.match(template, start)
        assert token is not None
        if where and canonical(token.group(1)) not in PLAIN_TOKENS:
            raise TemplateError(
                field,
                f"token {token.group(0)} sits {QUOTING_NAMES[where]}; tokens are already quoted"
                " for the shell, so write them bare (a quoted title could run commands)",
            )
    wrapper = REFERENCE_WRAPPERS.search(template)
    if wrapper is not None:
        raise TemplateError(
            field,
            f"calls the reference submitter's wrapper {wrapper.group(1)}, which is not uploaded"
            " here; call <wrapper> instead (see docs/render-command.md)",
        )


def quote(value: str) -> str:
    """One shell word, whatever the value holds."""
    return shlex.quote(value)


def _words(values: Sequence[str]) -> str:
    return " ".join(quote(value) for value in values)


def _spec(frames: FrameList) -> str:
    return frames.spec


def task_values(task: Task, plan: FramePlan, context: TemplateContext) -> dict[str, str]:
    """Every token's replacement text for ``task``, already quoted where it came from a person.

    ``<sources>`` lists the context's images (in the context's order) that render a frame of this
    chunk, and ``<chunks>`` their frames in the same order (the reference intersects each image's
    range with the chunk the same way). A plan made without per-image frames has none to consult,
    so every source then renders the whole chunk.
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
    frames = plan.frames
    return {
        "pdir": quote(context.pdir),
        "temp_dir": quote(context.temp_dir),
        "timestamp": quote(context.timestamp),
        "submitter": quote(context.job_title),
        "render_package": quote(context.render_package),
        "project": quote(context.project),
        "scout": quote(_spec(plan.scout_frames) if plan.scouting else ""),
        "chunksize": str(plan.chunk_size),
        "chunkcount": str(len(plan.chunks)),
        "scoutcount": str(len(plan.scout_frames) if plan.scouting else 0),
        "sequencelength": str(len(frames)),
        "sequence": quote(_spec(frames)),
        "sequencemin": str(frames.first),
        "sequencemax": str(frames.last),
        "instance_type": quote(context.instance_type),
        "instance": quote(context.instance or context.instance_type),
        "tiles": str(task.tiles),
        "preemptible": "preemptible" if context.preemptible else "non-preemptible",
        "retries": str(context.retries),
        "job": quote(context.job_title),
        "directories": _words(context.directories),
        "tile_number": str(task.tile_number),
        "chunks": _words(chunks),
        "sources": _words(sources),
        "chunklength": str(len(task.frames)),
        "chunkstart": str(task.frames.first),
        "chunkend": str(task.frames.last),
        "wrapper": quote(context.wrapper),
        "config_file": quote(context.config_file),
        "task": str(task.index),
        "task_frames": quote(task.frames.spec),
        "task_scout": "1" if task.scout else "0",
    }


def render_command(template: str, task: Task, plan: FramePlan, context: TemplateContext) -> str:
    """The command for one task; bad tokens raise TemplateError (see ``check_template``).

    Substitution is one pass, so a value that itself reads ``<project>`` is left as text.
    """
    check_template(template)
    values = task_values(task, plan, context)
    return TOKEN.sub(lambda match: values[canonical(match.group(1))], template)
