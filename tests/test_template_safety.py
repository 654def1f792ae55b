"""Issue 14: a token inside quotes is refused, and every produced command parses as intended.

Tokens are shell-quoted when substituted; quotes around a token in the template would undo that
quoting and let a title run ``$(...)`` on the render node. Hostile titles, paths and image names
must come back from bash itself (and from shlex) as exactly the words the template meant.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec, plan_frames
from prefect_conductor.conductor_cloud.job.model import DEFAULT_TASK_TEMPLATE
from prefect_conductor.conductor_cloud.job.template import (
    TemplateContext,
    check_template,
    render_command,
)


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ('cnode <render_package> -title "<job>"', "inside double quotes"),
        ("cnode <render_package> -title '<ct_job>'", "inside single quotes"),
        ('cnode "$(echo <job>)"', "inside double quotes"),
        ('cnode "a\\"<job>"', "inside double quotes"),
        ('cnode "a\\<job>"', "inside double quotes"),
        ("cnode `echo <job>`", "inside backticks"),
        ("cnode \\<job>", "after a backslash"),
        ("cnode $<job>", "after a $"),
        ("cnode 'it''s' \"x\"<job> '<pdir>/x'", "inside single quotes"),
        ("cat << EOF > notes\n<job>\nEOF\ncnode <render_package>", "in a here-document"),
        ("[[ <job> -eq 1 ]] && cnode", "inside [[ ]]"),
        ("echo $(( <project> + 1 ))", "inside (( ))"),
    ],
)
def test_a_quoted_token_is_refused_naming_the_field_and_the_token(
    template: str, where: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        check_template(template)
    message = str(caught.value)
    assert message.startswith("task_template: token <")
    assert f"sits {where};" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_TASK_TEMPLATE,
        'cnode <render_package> -title "fixed text" <job>',
        "cnode 'it''s' \"x\"<job> -o=<directories> > \"log file\" 2>&1",
        "a=<job>; cnode <render_package> && echo '$(done)'",
        "cnode <render_package> -log \"frame_<chunkstart>-<ct_chunkend>.log\" -t '<tiles>'",
        "echo $(( <chunkstart> - 1 )) <<< <job>; [[ <tile_number> -eq 1 ]] && cnode <sources>",
    ],
)
def test_bare_tokens_beside_quoted_text_are_fine(template: str) -> None:
    check_template(template)


@pytest.mark.parametrize("name", ["ct_cnode", "ciocnode"])
def test_the_reference_wrapper_is_refused_pointing_at_ours(name: str) -> None:
    with pytest.raises(TemplateError, match=r"^task_template: calls .*<wrapper>"):
        check_template(f"<ct_temp_dir>/{name} <ct_render_package> -image <ct_sources>")


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=24,
)


def context_of(
    values: dict[str, str], sources: list[str], directories: list[str]
) -> TemplateContext:
    return TemplateContext(
        render_package=values["render_package"],
        sources=tuple(sources),
        project=values["project"],
        instance_type=values["instance_type"],
        job_title=values["job"],
        temp_dir=values["temp_dir"],
        pdir=values["pdir"],
        wrapper=values["wrapper"],
        config_file=values["config_file"],
        directories=tuple(directories),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries(
        {
            name: TEXT
            for name in (
                "job",
                "project",
                "render_package",
                "pdir",
                "temp_dir",
                "config_file",
                "instance_type",
                "wrapper",
            )
        }
    ),
    sources=st.lists(TEXT, min_size=1, max_size=3),
    directories=st.lists(TEXT, min_size=0, max_size=3),
)
@pytest.mark.usefixtures("cli_subprocess")
def test_hostile_values_come_back_from_bash_as_the_words_the_template_meant(
    values: dict[str, str], sources: list[str], directories: list[str]
) -> None:
    plan = plan_frames(parse_frame_spec("1-4"), 2)
    ctx = context_of(values, sources, directories)
    template = (
        "printf '%s\\0' <job> <ct_job> <project> <render_package> <pdir> <temp_dir>"
        " <config_file> <instance_type> <wrapper> -image <sources> --mkdir <directories> end"
    )
    command = render_command(template, plan.tasks[0], plan, ctx)
    expected = [
        values["job"],
        values["job"],
        values["project"],
        values["render_package"],
        values["pdir"],
        values["temp_dir"],
        values["config_file"],
        values["instance_type"],
        values["wrapper"],
        "-image",
        *sources,
        "--mkdir",
        *directories,
        "end",
    ]
    assert shlex.split(command)[2:] == expected
    assert subprocess.run(["bash", "-n", "-c", command], check=False).returncode == 0
    ran = subprocess.run(["bash", "-c", command], capture_output=True, check=True)
    assert ran.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] == expected


@pytest.mark.usefixtures("cli_subprocess")
@settings(max_examples=40, deadline=None)
@given(title=TEXT, package=TEXT, image=TEXT)
def test_the_default_template_parses_with_hostile_titles_paths_and_images(
    title: str, package: str, image: str
) -> None:
    plan = plan_frames(parse_frame_spec("1-4"), 2)
    ctx = TemplateContext(
        render_package=f"/proj/{package}.project",
        sources=(f"project://scene/{image}",),
        project="default",
        instance_type="n1-standard-8",
        job_title=title,
        wrapper="/opt/conductor_render.py",
        directories=(f"/proj/renders/{image}",),
    )
    command = render_command(DEFAULT_TASK_TEMPLATE, plan.tasks[0], plan, ctx)
    assert subprocess.run(["bash", "-n", "-c", command], check=False).returncode == 0
    words = shlex.split(command)
    assert words[words.index("--") + 2] == f"/proj/{package}.project"
    assert words[words.index("-image") + 1] == f"project://scene/{image}"
    assert words[words.index("--mkdir") + 1] == f"/proj/renders/{image}"
