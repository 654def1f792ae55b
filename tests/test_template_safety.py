"""No template can make a token's value code: refused in one line, or literal in bash and dash.

Tokens are substituted word by word, each word holding a token sent as one quoted word. A value
can still become code where the command reading it evaluates it (``eval``, ``bash -c``, ``trap``,
``let``, ``printf -v``, ``declare``, arithmetic, subscripts, assignments): such templates are
refused naming the token. The proof runs every accepted template in real ``bash`` and ``dash``
with hostile values that would create a marker file if any shell ran them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_conductor.conductor_cloud.errors import TemplateError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec, plan_frames
from prefect_conductor.conductor_cloud.job.model import DEFAULT_TASK_TEMPLATE
from prefect_conductor.conductor_cloud.job.shell_words import RUNNERS, SHELL_WORDS
from prefect_conductor.conductor_cloud.job.template import (
    TemplateContext,
    check_template,
    render_command,
)

SHELLS = ("bash", "dash")
RUN_SECONDS = 10


@pytest.mark.parametrize(
    ("template", "token", "reason"),
    [
        ("eval <job>", "<job>", "the shell's eval"),
        ("bash -c <job>", "<job>", "first argument must be a script"),
        ("sh -c <ct_job> x", "<ct_job>", "first argument must be a script"),
        ("python3 -c <job>", "<job>", "first argument must be a script"),
        ("trap <job> EXIT", "<job>", "the shell's trap"),
        ("let <job>", "<job>", "the shell's let"),
        ("printf -v <job> x", "<job>", "first argument must be a script or format"),
        ("declare -a arr=<job>", "<job>", "the shell's declare"),
        ("read <project>", "<project>", "the shell's read"),
        ("env <job>", "<job>", "runs its arguments"),
        ("xargs echo <job>", "<job>", "runs its arguments"),
        ("[[ <job> -eq 1 ]] && cnode", "<job>", "inside [[ ]]"),
        ("(( <job> + 1 ))", "<job>", "inside (( ))"),
        ("echo $(( <project> + 1 ))", "<project>", "'$('"),
        ('cnode "$(echo <job>)"', "<job>", "'$('"),
        ("cnode `echo <job>`", "<job>", "'`'"),
        ("cnode $<job>", "<job>", "shares the word $<job>"),
        ("cnode \\<job>", "<job>", "shares the word \\<job>"),
        ("cnode a;<job>", "<job>", "as a command name"),
        ("cnode a<job>$x", "<job>", "shares the word a<job>$x"),
        ("cnode <sources>,x", "<sources>", "several words"),
        ("cat << EOF > notes\n<job>\nEOF\ncnode <render_package>", "<job>", "'<<'"),
        ("<job> -rf /", "<job>", "as a command name"),
        ("cnode x; <project>", "<project>", "as a command name"),
        ("x=<job> cnode", "<job>", "in an assignment"),
        ("cnode > <job>", "<job>", "redirection target"),
        ("f() { eval $1; }; f <job>", "<job>", "defines a function f"),
        ("alias r=eval\nr <job>", "<job>", "defines alias names"),
        ("for x in <job>; do cnode; done", "<job>", "the shell's for"),
        ("$CMD <job>", "<job>", "not a plain command name"),
        ('eval ";" echo <job>', "<job>", "the shell's eval"),
        ('true "&&";eval <job>', "<job>", "joins quotes to shell operators"),
    ],
)
def test_a_token_where_it_could_become_code_is_refused_in_one_line(
    template: str, token: str, reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        check_template(template)
    message = str(caught.value)
    assert message.startswith(f"task_template: token {token} "), message
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_TASK_TEMPLATE,
        'cnode <render_package> -title "<job>"',
        "cnode <render_package> -title '<ct_job>' -p '<pdir>/x'",
        "cnode 'it''s' \"x\"<job> -o=<render_package> > \"log file\" 2>&1",
        "mkdir -p <directories> && cd <pdir> && cnode <renderpackage> -image <sources>",
        "cnode <render_package> -log \"frame_<chunkstart>-<ct_chunkend>.log\" -t '<tiles>'",
        "echo $(( <chunkstart> - 1 )); [[ <tile_number> -eq 1 ]] && cnode",
        "printf '%s\\n' <job> | cnode -stdin; python3 script.py <job>",
        "if test -d /x; then cnode <job>; fi\ncnode <project> # a note",
    ],
)
def test_tokens_as_arguments_are_fine_quoted_or_not(template: str) -> None:
    check_template(template)


def test_the_reference_tokens_spelt_without_underscore_are_accepted() -> None:
    plan = plan_frames(parse_frame_spec("1-2"), 2)
    ctx = context_of(dict.fromkeys(STRING_TOKENS, "v"), ["s"], [])
    command = render_command(
        "cnode <renderpackage> -T <tempdir> <ct_renderpackage>", plan.tasks[0], plan, ctx
    )
    assert shlex.split(command) == ["cnode", "v", "-T", "v", "v"]


@pytest.mark.parametrize("name", ["ct_cnode", "ciocnode"])
def test_the_reference_wrapper_is_refused_pointing_at_ours(name: str) -> None:
    with pytest.raises(TemplateError, match=r"^task_template: calls .*<wrapper>"):
        check_template(f"<ct_temp_dir>/{name} <ct_render_package> -image <ct_sources>")


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=24,
)
STRING_TOKENS = (
    "job",
    "project",
    "render_package",
    "pdir",
    "temp_dir",
    "config_file",
    "instance_type",
    "wrapper",
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


@pytest.fixture(scope="module")
def show(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in renderer that prints each argument it gets, NUL-terminated."""
    script = tmp_path_factory.mktemp("bin") / "show"
    script.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done\n')
    script.chmod(0o755)
    return script


@pytest.mark.usefixtures("cli_subprocess")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.fixed_dictionaries(dict.fromkeys(STRING_TOKENS, TEXT)),
    sources=st.lists(TEXT, min_size=1, max_size=3),
    directories=st.lists(TEXT, min_size=0, max_size=3),
    shell=st.sampled_from(SHELLS),
)
def test_hostile_values_come_back_from_the_shell_as_the_words_the_template_meant(
    show: Path, values: dict[str, str], sources: list[str], directories: list[str], shell: str
) -> None:
    plan = plan_frames(parse_frame_spec("1-4"), 2)
    ctx = context_of(values, sources, directories)
    template = (
        f"{show} <job> '<ct_job>' \"<project>\" <render_package> -d=<pdir> <temp_dir>"
        " <config_file> <instance_type> <wrapper> -image <sources> --mkdir <directories> end"
    )
    command = render_command(template, plan.tasks[0], plan, ctx)
    expected = [
        values["job"],
        values["job"],
        values["project"],
        values["render_package"],
        "-d=" + values["pdir"],
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
    assert shlex.split(command)[1:] == expected
    ran = subprocess.run([shell, "-c", command], capture_output=True, check=True, timeout=30)
    assert ran.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1] == expected


# Every place a word can stand: the command, its options, its arguments, assignments,
# arithmetic, tests, loops, traps; {w} is a builtin, keyword or runner, {t} a token.
SHAPES = (
    "{w} {t}",
    "{w} {t} x",
    "{w} x {t}",
    "{w} -v {t} x",
    "{w} -c {t}",
    "{w} -c {t} x",
    "{w} -a arr={t}",
    "{w} arr={t}",
    "{w} -- {t}",
    "{w} -p {t}",
    "{w} {t} EXIT",
    "{w} '{t}'",
    '{w} "{t}"',
    "{w} x={t}",
    "{w} {t}; echo",
    "echo; {w} {t}",
    "{w} x | {w} {t}",
    "if {w} {t}; then echo; fi",
    "{w} [ {t} ]",
    "{w} (( {t} ))",
    "{w} [[ {t} -eq 1 ]]",
    "{t} {w}",
    "x={t} {w}",
    "{w} x; eval {t}",
    "{w} {t} -eq 1",
    "for x in {t}; do {w} $x; done",
    "case {t} in *) {w} ;; esac",
    "f() {{ {w} $1; }}; f {t}",
)
PAYLOADS = (
    "a[$(touch {m})]",
    "($(touch {m}))",
    "touch {m}",
    "x;touch {m};",
    "`touch {m}`",
    "'$(touch {m})'",
    '"$(touch {m})"',
)
WORDS = sorted(SHELL_WORDS | RUNNERS | {"python3", "sh", "bash", "dash", "cnode"})
TOKENS_TO_TRY = ("<job>", "<ct_job>", "<project>", "<render_package>", "<sources>", "<wrapper>")


def attack(template: str, payload: str, folder: Path) -> None:
    """The template is refused naming a token, or running it in bash and dash leaves no marker."""
    marker = folder / "marker"
    value = payload.format(m=marker)
    try:
        check_template(template)
    except TemplateError as refused:
        message = str(refused)
        assert message.startswith("task_template: token <"), message
        assert "\n" not in message
        return
    plan = plan_frames(parse_frame_spec("1"), 1)
    ctx = TemplateContext(
        render_package=value,
        sources=(value,),
        project=value,
        instance_type="n1",
        job_title=value,
        wrapper=value,
        directories=(value,),
    )
    command = render_command(template, plan.tasks[0], plan, ctx)
    for shell in SHELLS:
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [shell, "-c", command],
                cwd=folder,
                env={"PATH": os.environ["PATH"], "HOME": str(folder)},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
                timeout=RUN_SECONDS,
            )
        assert not marker.exists(), f"{shell} ran {value!r} from {template!r}: {command}"


@pytest.mark.usefixtures("cli_subprocess")
def test_every_builtin_and_keyword_in_every_place_never_runs_the_value(tmp_path: Path) -> None:
    for word in WORDS:
        for shape in SHAPES:
            for payload in PAYLOADS[:2]:
                attack(shape.format(w=word, t="<job>"), payload, tmp_path)


@pytest.mark.usefixtures("cli_subprocess")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    word=st.sampled_from(WORDS),
    shape=st.sampled_from(SHAPES),
    token=st.sampled_from(TOKENS_TO_TRY),
    payload=st.sampled_from(PAYLOADS),
)
def test_hostile_values_in_any_place_never_run(
    tmp_path_factory: pytest.TempPathFactory, word: str, shape: str, token: str, payload: str
) -> None:
    attack(shape.format(w=word, t=token), payload, tmp_path_factory.mktemp("attack"))


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
    for shell in SHELLS:
        assert subprocess.run([shell, "-n", "-c", command], check=False).returncode == 0
    words = shlex.split(command)
    assert words[words.index("--") + 2] == f"/proj/{package}.project"
    assert words[words.index("-image") + 1] == f"project://scene/{image}"
    assert words[words.index("--mkdir") + 1] == f"/proj/renders/{image}"
