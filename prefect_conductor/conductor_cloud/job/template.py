"""Task command templates: ``<angle bracket>`` tokens replaced per task, word by word.

Every token of the reference submitter (cioclarisse / conductor.clarisse) is accepted with its
meaning, spelt either way: ``<ct_chunks>`` as the reference writes it, or ``<chunks>``. So a
studio's existing template carries over. We add a few of our own (``<wrapper>``, ``<task>``,
``<task_frames>``, ``<task_scout>``, ``<config_file>``); docs/render-command.md lists them all.

The template is split once into shell words (``shell_words``); each word that holds a token is
substituted and sent as one quoted word, every other word as written. So a title such as
``$(rm -rf ~)`` is one literal argument wherever the template put it, with or without quotes
around the token, and a template that would hand a value to something that evaluates it is
refused in one line naming the token.

A token that is not known is an error naming it, instead of being sent to the farm as literal
text. A template that calls the reference's own wrapper (``ct_cnode``/``ciocnode``), which this
submitter does not upload, is refused too, pointing at ``<wrapper>``.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.job.frames import FrameList, FramePlan, Task
from prefect_conductor.conductor_cloud.job.shell_words import Mark, Word, refusal, split_words

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
    "tempdir": "The same as temp_dir (the reference accepts both spellings).",
    "timestamp": "When the payload was built, as YYYY_MM_DD_HH_MM_SS.",
    "submitter": "The ConductorJob's name; here the job title (the item name is not exported).",
    "render_package": "The exported render package the node loads (a path).",
    "renderpackage": "The same as render_package (the reference accepts both spellings).",
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
#: safe in any shell context, so they may stand anywhere, in arithmetic too.
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

#: Tokens that stand for several words (one per image or folder): each must be a word of its own.
LIST_TOKENS = frozenset({"directories", "chunks", "sources"})


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


STRING_MARKS_START = 0xE000
"""Each token stands in as one private-use character while the template is split into words."""
PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template: its text with one stand-in character per token, and its words."""

    text: str
    names: Mapping[str, str]  # stand-in -> canonical token name
    words: tuple[Word, ...]


def _kind(name: str) -> str:
    return "plain" if name in PLAIN_TOKENS else "list" if name in LIST_TOKENS else "string"


@functools.lru_cache(maxsize=64)
def compile_template(template: str, field: str = "task_template") -> CompiledTemplate:
    """Check ``template`` (see ``check_template``) and split it into words once."""
    _check_tokens(template, field)
    odd = PRIVATE_USE.search(template)
    if odd is not None:
        raise TemplateError(field, f"holds the private-use character U+{ord(odd.group(0)):04X}")
    names: dict[str, str] = {}
    marks: dict[str, Mark] = {}

    def stand_in(match: re.Match[str]) -> str:
        char = chr(STRING_MARKS_START + len(names))
        names[char] = canonical(match.group(1))
        marks[char] = Mark(match.group(0), _kind(names[char]))
        return char

    text = TOKEN.sub(stand_in, template)
    try:
        words = split_words(text)
    except ValueError as error:
        raise TemplateError(field, f"{str(error).lower()} in the template") from None
    scripts = frozenset(char for char, name in names.items() if name == "wrapper")
    reason = refusal(text, words, marks, scripts)
    if reason:
        raise TemplateError(field, reason)
    return CompiledTemplate(text, names, tuple(words))


def _check_tokens(template: str, field: str) -> None:
    """Raise TemplateError naming the first unknown, malformed or unclosed token."""
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
    wrapper = REFERENCE_WRAPPERS.search(template)
    if wrapper is not None:
        raise TemplateError(
            field,
            f"calls the reference submitter's wrapper {wrapper.group(1)}, which is not uploaded"
            " here; call <wrapper> instead (see docs/render-command.md)",
        )


def check_template(template: str, field: str = "task_template") -> None:
    """Raise TemplateError, in one line naming the token, for a template we cannot run safely.

    Refused: an unknown, malformed or unclosed token (a half-written ``<render_package`` would
    reach the render node as input redirection; ``> log``, ``2>&1`` and ``< input`` stay
    possible), an unclosed quote, and a string token anywhere but a plain argument of a command
    that does not evaluate its arguments (see ``shell_words``).
    """
    compile_template(template, field)


def quote(value: str) -> str:
    """One shell word, whatever the value holds."""
    return shlex.quote(value)


def _spec(frames: FrameList) -> str:
    return frames.spec


def token_values(
    task: Task, plan: FramePlan, context: TemplateContext
) -> dict[str, str | list[str]]:
    """Every token's value for ``task``, unquoted; a list for tokens that stand for several words.

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
        "pdir": context.pdir,
        "temp_dir": context.temp_dir,
        "tempdir": context.temp_dir,
        "timestamp": context.timestamp,
        "submitter": context.job_title,
        "render_package": context.render_package,
        "renderpackage": context.render_package,
        "project": context.project,
        "scout": _spec(plan.scout_frames) if plan.scouting else "",
        "chunksize": str(plan.chunk_size),
        "chunkcount": str(len(plan.chunks)),
        "scoutcount": str(len(plan.scout_frames) if plan.scouting else 0),
        "sequencelength": str(len(frames)),
        "sequence": _spec(frames),
        "sequencemin": str(frames.first),
        "sequencemax": str(frames.last),
        "instance_type": context.instance_type,
        "instance": context.instance or context.instance_type,
        "tiles": str(task.tiles),
        "preemptible": "preemptible" if context.preemptible else "non-preemptible",
        "retries": str(context.retries),
        "job": context.job_title,
        "directories": list(context.directories),
        "tile_number": str(task.tile_number),
        "chunks": chunks,
        "sources": sources,
        "chunklength": str(len(task.frames)),
        "chunkstart": str(task.frames.first),
        "chunkend": str(task.frames.last),
        "wrapper": context.wrapper,
        "config_file": context.config_file,
        "task": str(task.index),
        "task_frames": task.frames.spec,
        "task_scout": "1" if task.scout else "0",
    }


def task_values(task: Task, plan: FramePlan, context: TemplateContext) -> dict[str, str]:
    """Every token's replacement text for ``task`` as it stands alone in a command, quoted."""
    return {
        name: " ".join(quote(item) for item in value)
        if isinstance(value, list)
        else value
        if name in PLAIN_TOKENS
        else quote(value)
        for name, value in token_values(task, plan, context).items()
    }


def render_command(template: str, task: Task, plan: FramePlan, context: TemplateContext) -> str:
    """The command for one task; a template we cannot run safely raises TemplateError.

    Words without a token are sent as written; a word with a token is substituted and quoted as
    one word (a list token becomes one quoted word per item). Numbers and fixed words are written
    bare wherever they stand. Substitution is one pass, so a value reading ``<project>`` stays text.
    """
    compiled = compile_template(template)
    values = token_values(task, plan, context)

    def plain(text: str) -> str:
        return "".join(
            str(values[compiled.names[char]]) if char in compiled.names else char for char in text
        )

    pieces: list[str] = []
    position = 0
    for word in compiled.words:
        held = [compiled.names[char] for char in word.text if char in compiled.names]
        if all(name in PLAIN_TOKENS for name in held):
            continue
        pieces.append(plain(compiled.text[position : word.start]))
        listed = next((values[name] for name in held if name in LIST_TOKENS), None)
        if isinstance(listed, list):
            pieces.append(" ".join(quote(item) for item in listed))
        else:
            pieces.append(quote(plain(word.value)))
        position = word.end
    pieces.append(plain(compiled.text[position:]))
    return "".join(pieces)
