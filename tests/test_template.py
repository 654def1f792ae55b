"""Task command templates: tokens, unknown-token errors, and quoting that injection cannot beat."""

from __future__ import annotations

import shlex

import pytest

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.job.frames import image_range, parse_frame_spec, plan_frames
from prefect_conductor.conductor_cloud.job.model import DEFAULT_TASK_TEMPLATE
from prefect_conductor.conductor_cloud.job.template import (
    REFERENCE_TOKENS,
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
        "wrapper": "/opt/prefect_conductor/conductor_render.sh",
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
    assert words[:2] == ["sh", "/opt/prefect_conductor/conductor_render.sh"]
    assert words[words.index("--") + 1 : words.index("--") + 3] == [
        "cnode",
        "/proj/shot.cio.project",
    ]
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
    template = "x " + " ".join(f"<{name}>" for name in TOKENS)
    command = render_command(template, plan.tasks[0], plan, context())
    assert "<" not in command
    words = shlex.split(command)
    assert "1-5x2" in words  # <task_frames>
    assert words[words.index("1-5x2") + 1] == "1"  # <task_scout>
    ct_template = "x " + " ".join(f"<ct_{name}>" for name in REFERENCE_TOKENS)
    assert "<" not in render_command(ct_template, plan.tasks[0], plan, context())


def test_unknown_token_is_named() -> None:
    with pytest.raises(TemplateError) as caught:
        check_template("cnode <render_package> <frames>")
    message = str(caught.value)
    assert message.startswith("task_template: unknown token <frames>; known: <pdir>")
    assert all(f"<{name}>" in message for name in TOKENS)
    assert template_tokens("a <b> c <d>") == ["b", "d"]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("cnode <render_package -image <sources>", "unclosed token <render_package:"),
        ("cnode <render_package", "unclosed token <render_package:"),
        ("cnode <sources><chunks", "unclosed token <chunks:"),
        ("cnode <render-package>", "malformed token <render-package>;"),
        ("cat <<EOF", "unclosed token <EOF:"),
    ],
)
def test_unbalanced_or_malformed_tokens_are_named(template: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        check_template(template, field="task_template")
    assert str(caught.value).startswith(f"task_template: {reason}")
    plan = plan_frames(parse_frame_spec("1"), 1)
    with pytest.raises(TemplateError):
        render_command(template, plan.tasks[0], plan, context())


def test_shell_redirects_are_not_tokens() -> None:
    template = "cnode <render_package> < /dev/null > /tmp/log 2>&1 <>x"
    check_template(template)
    plan = plan_frames(parse_frame_spec("1"), 1)
    command = render_command(template, plan.tasks[0], plan, context())
    assert command == "cnode /proj/shot.cio.project < /dev/null > /tmp/log 2>&1 <>x"


def test_numbers_are_bare_and_sources_follow_the_images_with_frames() -> None:
    main = parse_frame_spec("1-20")
    plan = plan_frames(
        main,
        10,
        scout=parse_frame_spec("15"),
        tiles=2,
        image_frames={
            "project://scene/shadow": image_range(1, 20, 3),
            "project://scene/beauty": image_range(1, 5),
        },
    )
    template = (
        "x <sources> , <chunks> , <chunkstart> <chunkend> <chunklength> <task_frames> <task_scout>"
        " <chunksize> <chunkcount> <tiles> <tile_number> <task>"
    )
    first = render_command(template, plan.tasks[1], plan, context())
    # context order (beauty, shadow) wins over plan order; each source has its own frames
    assert first == (
        "x project://scene/beauty project://scene/shadow , 1:5 1:10%3 , 1 10 10 1-10 0 10 2 2 2 1"
    )
    second = render_command(template, plan.tasks[2], plan, context())
    assert second == "x project://scene/shadow , 13:19%3 , 11 20 10 11-20 1 10 2 2 1 2"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_values_stay_one_argument(hostile: str) -> None:
    """Every value from a person or a file comes back from shlex.split as exactly one word."""
    source = f"project://scene/{hostile}"
    plan = plan_frames(
        parse_frame_spec("-10--2x2,5"), 10, image_frames={source: parse_frame_spec("-10--2x2,5")}
    )
    ctx = context(
        render_package=f"/proj/{hostile}.project",
        sources=(source,),
        project=hostile,
        instance_type=hostile,
        job_title=hostile,
        temp_dir=f"/tmp/{hostile}",
        pdir=f"/p/{hostile}",
    )
    template = (
        "cnode <render_package> -image <sources> -f <chunks> -p <project> -i <instance_type>"
        " -t <job> -d <pdir> -T <temp_dir> -s <task_frames> ; echo done"
    )
    words = shlex.split(render_command(template, plan.tasks[0], plan, ctx))
    assert words == [
        "cnode",
        f"/proj/{hostile}.project",
        "-image",
        source,
        "-f",
        "-10:-2%2;5",
        "-p",
        hostile,
        "-i",
        hostile,
        "-t",
        hostile,
        "-d",
        f"/p/{hostile}",
        "-T",
        f"/tmp/{hostile}",
        "-s",
        "-10--2x2,5",
        ";",
        "echo",
        "done",
    ]


def test_values_holding_token_text_are_not_expanded_again() -> None:
    plan = plan_frames(parse_frame_spec("1-2"), 2)
    command = render_command(
        "x <job> <project>", plan.tasks[0], plan, context(job_title="<project>")
    )
    assert shlex.split(command) == ["x", "<project>", "default"]


def test_reference_tokens_keep_cioclarisses_meaning_with_or_without_ct() -> None:
    """shot010's plan: frames 1-10, chunk 2, scouts 3,8; values as cioclarisse computes them."""
    plan = plan_frames(parse_frame_spec("1-10"), 2, scout=parse_frame_spec("3,8"))
    ctx = context(
        instance="8 core, 30GB Mem",
        preemptible=True,
        retries=2,
        temp_dir="/tmp/conductor",
        pdir="/proj",
        directories=("/proj/renders/beauty", "/proj/renders/shadow"),
        timestamp="2026_12_02_08_00_00",
    )
    expected = {
        "sequence": ["1-10"],
        "sequencelength": ["10"],
        "sequencemin": ["1"],
        "sequencemax": ["10"],
        "scout": ["3,8"],
        "scoutcount": ["2"],
        "chunksize": ["2"],
        "chunkcount": ["5"],
        "chunkstart": ["3"],
        "chunkend": ["4"],
        "chunklength": ["2"],
        "chunks": ["3:4", "3:4"],
        "sources": ["project://scene/beauty", "project://scene/shadow"],
        "tiles": ["1"],
        "tile_number": ["1"],
        "instance_type": ["n1-standard-8"],
        "instance": ["8 core, 30GB Mem"],
        "preemptible": ["preemptible"],
        "retries": ["2"],
        "job": ["shot010"],
        "submitter": ["shot010"],
        "project": ["default"],
        "render_package": ["/proj/shot.cio.project"],
        "renderpackage": ["/proj/shot.cio.project"],
        "pdir": ["/proj"],
        "temp_dir": ["/tmp/conductor"],
        "tempdir": ["/tmp/conductor"],
        "timestamp": ["2026_12_02_08_00_00"],
        "directories": ["/proj/renders/beauty", "/proj/renders/shadow"],
    }
    assert set(expected) == set(REFERENCE_TOKENS)
    for name, words in expected.items():
        for spelt in (name, f"ct_{name}"):
            command = render_command(f"x <{spelt}>", plan.tasks[1], plan, ctx)
            assert shlex.split(command)[1:] == words, spelt
