"""Task command templates: tokens, unknown-token errors, and quoting that injection cannot beat."""

from __future__ import annotations

import shlex

import pytest

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.frames import image_range, parse_frame_spec, plan_frames
from prefect_conductor.conductor_cloud.job import DEFAULT_TASK_TEMPLATE
from prefect_conductor.conductor_cloud.template import (
    TOKENS,
    TemplateContext,
    check_template,
    render_command,
    template_tokens,
)

HOSTILE = [
    "it's",
    'say "hi"',
    "a; rm -rf /",
    "$(touch /tmp/pwned)",
    "`id`",
    "line\nbreak",
    "x && y || z",
    "* ? [a]",
    "-rf",
]


def context(**changes: object) -> TemplateContext:
    fields: dict[str, object] = {
        "render_package": "/proj/shot.cio.project",
        "sources": ("project://scene/beauty", "project://scene/shadow"),
        "project": "default",
        "instance_type": "n1-standard-8",
        "job_title": "shot010",
    }
    fields.update(changes)
    return TemplateContext(**fields)  # type: ignore[arg-type]


def test_default_template_renders_every_image_with_its_frames() -> None:
    frames = parse_frame_spec("1-10")
    plan = plan_frames(
        frames,
        4,
        image_frames={
            "project://scene/beauty": frames,
            "project://scene/shadow": image_range(1, 5),
        },
    )
    command = render_command(DEFAULT_TASK_TEMPLATE, plan.tasks[1], plan, context())
    words = shlex.split(command)
    assert words[:2] == ["cnode", "/proj/shot.cio.project"]
    assert words[words.index("-image") + 1 : words.index("-image_frames_list")] == [
        "project://scene/beauty",
        "project://scene/shadow",
    ]
    assert words[words.index("-image_frames_list") + 1 : words.index("-image_frames_list") + 3] == [
        "5:8",
        "5",
    ]
    assert words[words.index("-tile_rendering") + 1 : words.index("-tile_rendering") + 3] == [
        "1",
        "1",
    ]


def test_every_token_renders() -> None:
    plan = plan_frames(parse_frame_spec("1-9x2"), 3, scout=parse_frame_spec("1"), tiles=2)
    template = " ".join(f"<{name}>" for name in TOKENS)
    command = render_command(template, plan.tasks[0], plan, context())
    assert "<" not in command
    words = shlex.split(command)
    assert "1-5x2" in words  # <sequence>
    assert words[words.index("1-5x2") + 1] == "1"  # <scout>


def test_unknown_token_is_named() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template("cnode <render_package> <frames>")
    assert str(caught.value).startswith("task_template: unknown token <frames>")
    assert template_tokens("a <b> c <d>") == ["b", "d"]


def test_redirects_are_not_tokens() -> None:
    check_template("cnode <render_package> > /tmp/log 2>&1")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_stay_one_argument(hostile: str) -> None:
    plan = plan_frames(parse_frame_spec("1-2"), 2)
    ctx = context(
        render_package=f"/proj/{hostile}.project",
        sources=(f"project://scene/{hostile}",),
        project=hostile,
        job_title=hostile,
        pdir=f"/p/{hostile}",
    )
    template = "cnode <render_package> -image <sources> -p <project> -t <job> -d <pdir>"
    words = shlex.split(render_command(template, plan.tasks[0], plan, ctx))
    assert words == [
        "cnode",
        f"/proj/{hostile}.project",
        "-image",
        f"project://scene/{hostile}",
        "-p",
        hostile,
        "-t",
        hostile,
        "-d",
        f"/p/{hostile}",
    ]
