"""The render wrapper: shot010's produced commands run against a stand-in host renderer.

The stand-in ``cnode`` records the arguments and the folder it ran in; the test checks what the
wrapper did before handing over (output folders, tile flag, config file, license server, the
package named by its file name from its own folder), from a project folder whose path holds
spaces. The wrapper is POSIX sh, so every test runs it under dash and under bash.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.loaders import load_job, load_scene
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.job.render_wrapper.host_config import CONFIG_NAME
from prefect_conductor.conductor_cloud.submission.prepare import Preview, build_preview
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog

# Each test runs the wrapper, the stand-in renderer or pip in a subprocess: the slow tier.
pytestmark = pytest.mark.usefixtures("cli_subprocess")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shot010"
STANDIN = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
    """
)
SHELLS = [shell for shell in ("/usr/bin/dash", "/usr/bin/bash") if os.path.exists(shell)]


@pytest.fixture(params=SHELLS, ids=os.path.basename)
def shell(request: pytest.FixtureRequest) -> str:
    """The ``sh`` a render node may have: dash (Debian's) or bash."""
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """shot010 copied under a folder with spaces, with a config file and no output folders."""
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path / "home with space"))
    folder = tmp_path / "my projects" / "shot 010"
    shutil.copytree(EXAMPLE, folder)
    shutil.rmtree(folder / "renders")
    (folder / "jobs.cfg").write_text("prefs {\n  threads 4\n}\nlayout {\n  a {\n  }\n}\n")
    return folder


@pytest.fixture
def host_bin(tmp_path: Path, shell: str) -> Path:
    """A folder holding the stand-in ``cnode``, and ``sh`` as the chosen shell."""
    folder = tmp_path / "bin"
    folder.mkdir()
    cnode = folder / "cnode"
    cnode.write_text(STANDIN.format(python=sys.executable))
    cnode.chmod(0o755)
    (folder / "sh").symlink_to(shell)
    return folder


def shot010_preview(project: Path, **job_changes: Any) -> Preview:
    job = load_job(project / "job.yaml").model_copy(update=job_changes)
    scene = load_scene(project / "scene_export.json")
    scene = scene.model_copy(update={"config_file": str(project / "jobs.cfg")})
    return build_preview(job, scene, fixture_catalog())


def run_task(
    body: dict[str, Any], index: int, host_bin: Path, log: Path, shell: str
) -> subprocess.Popen[str]:
    """Run one task's command the way a render node does: a shell, the job's environment."""
    environment = dict(body["environment"])
    environment["PATH"] = os.pathsep.join(
        [str(host_bin), environment.get("PATH", ""), os.environ["PATH"]]
    )
    environment["STANDIN_LOG"] = str(log)
    return subprocess.Popen(
        [shell, "-c", body["tasks_data"][index]["command"]],
        env=environment,
        cwd=log.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_wrapper(
    shell: str, host_bin: Path, log: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, str(WRAPPER_PATH), *args],
        env={"PATH": f"{host_bin}{os.pathsep}{os.environ['PATH']}", "STANDIN_LOG": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_shot010_tasks_run_the_host_with_folders_config_and_license(
    project: Path, host_bin: Path, tmp_path: Path, shell: str
) -> None:
    preview = shot010_preview(project)
    log = tmp_path / "calls.jsonl"
    for step, body in preview.bodies.items():
        for index in range(len(body["tasks_data"])):
            process = run_task(body, index, host_bin, log, shell)
            _, err = process.communicate()
            assert process.returncode == 0, (step, err)
    assert (project / "renders" / "beauty").is_dir()
    assert (project / "renders" / "shadow").is_dir()
    calls = received(log)
    assert len(calls) == 5
    config = Path(preview.prepared.scene.config_file)
    assert config.name == CONFIG_NAME
    assert config.read_text() == "prefs {\n  threads 4\n}\n"  # the interface's blocks dropped
    first = calls[0]  # the scout job's first task: frames 3-4
    assert first["cwd"] == str(project)
    assert first["argv"] == [
        "shot010.lighting.cio.project",
        "-image",
        "project://scene/beauty",
        "project://scene/shadow",
        "-image_frames_list",
        "3:4",
        "3:4",
        "-config_file",
        str(config),
        "-license_server",
        "conductor_ilise:40500",
        "-log_width",
        "0",
    ]
    assert all("-tile_rendering" not in call["argv"] for call in calls)


def test_tiles_keep_the_tile_flag_with_each_tasks_tile(
    project: Path, host_bin: Path, tmp_path: Path, shell: str
) -> None:
    preview = shot010_preview(project, tiles=4, use_scout_frames=False)
    log = tmp_path / "calls.jsonl"
    body = preview.bodies["full"]
    for index in range(4):
        process = run_task(body, index, host_bin, log, shell)
        assert process.wait() == 0
    tiles = [call["argv"][call["argv"].index("-tile_rendering") :][:3] for call in received(log)]
    assert tiles == [["-tile_rendering", "4", str(n)] for n in range(1, 5)]


def test_the_wrapper_and_the_cleaned_config_are_uploaded_with_the_job(project: Path) -> None:
    preview = shot010_preview(project)
    destinations = {entry["destination"] for entry in preview.bodies["scout"]["upload_files"]}
    assert str(WRAPPER_PATH) in destinations
    assert preview.prepared.scene.config_file in destinations
    assert str(project / "jobs.cfg") not in destinations  # the artist's own is never sent
    assert str(project / "cache" / "sim.0011.abc") in destinations  # motion blur of frame 10


def test_a_scene_without_a_config_still_passes_an_empty_one(project: Path) -> None:
    job = load_job(project / "job.yaml")
    preview = build_preview(job, load_scene(project / "scene_export.json"), fixture_catalog())
    config = Path(preview.prepared.scene.config_file)
    assert config.read_text() == ""
    for body in preview.bodies.values():
        for task in body["tasks_data"]:
            assert f" -config_file {shlex.quote(str(config))} " in task["command"]


def test_a_missing_config_file_on_the_node_fails_the_task_with_one_line(
    host_bin: Path, tmp_path: Path, shell: str
) -> None:
    log = tmp_path / "calls.jsonl"
    (tmp_path / "pkg").write_text("")
    missing = tmp_path / "none.cfg"
    finished = run_wrapper(
        shell, host_bin, log, "--", "cnode", str(tmp_path / "pkg"), "-config_file", str(missing)
    )
    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        f"conductor_render: config file {missing} is missing"
    ]
    assert not log.exists()


def test_the_package_is_named_by_its_file_name_from_its_folder(
    host_bin: Path, tmp_path: Path, shell: str
) -> None:
    folder = tmp_path / "a b" / "it's $HOME"
    folder.mkdir(parents=True)
    (folder / "shot.project").write_text("")
    log = tmp_path / "calls.jsonl"
    out = tmp_path / "out dir" / "beauty"
    finished = run_wrapper(
        shell,
        host_bin,
        log,
        *("--mkdir", str(out), ""),
        *("--", "cnode", str(folder / "shot.project"), "-tile_rendering", "1", "1", "-x", "1"),
    )
    assert finished.returncode == 0, finished.stderr
    assert out.is_dir()
    assert received(log) == [{"argv": ["shot.project", "-x", "1"], "cwd": str(folder)}]


def test_a_missing_render_package_fails_with_one_line(
    host_bin: Path, tmp_path: Path, shell: str
) -> None:
    log = tmp_path / "calls.jsonl"
    finished = run_wrapper(shell, host_bin, log, "--", "cnode", str(tmp_path / "none.project"))
    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        f"conductor_render: render package {tmp_path / 'none.project'} is missing"
    ]
    assert not log.exists()


def test_the_license_server_comes_from_the_job_then_the_setting(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "-license_server conductor_ilise:40500 " in load_job(project / "job.yaml").task_template
    monkeypatch.setenv("PREFECT_CONDUCTOR_LICENSE_SERVER", "studio-lic:5053")
    assert "-license_server studio-lic:5053 " in load_job(project / "job.yaml").task_template
    job = load_job(project / "job.yaml").model_validate(
        {
            **load_job(project / "job.yaml").model_dump(exclude={"task_template"}),
            "license_server": "mine:1",
        }
    )
    assert "-license_server mine:1 " in job.task_template
    # a host item holds the default template as it is: its license server still applies
    from prefect_conductor.conductor_cloud.job.model import DEFAULT_TASK_TEMPLATE, ConductorJob

    held = ConductorJob(task_template=DEFAULT_TASK_TEMPLATE, license_server="lic.studio:1")
    assert "-license_server lic.studio:1 " in held.task_template
    own = ConductorJob(task_template="sh <wrapper> -- cnode <render_package>", license_server="x:1")
    assert "x:1" not in own.task_template


def test_a_relative_config_file_is_anchored_at_the_export_folder(project: Path) -> None:
    export = json.loads((project / "scene_export.json").read_text())
    export["config_file"] = "jobs.cfg"
    (project / "scene_export.json").write_text(json.dumps(export))
    assert load_scene(project / "scene_export.json").config_file == str(project / "jobs.cfg")


def test_preview_json_task_commands_carry_the_license_server_and_a_config_file(
    tmp_path: Path,
) -> None:
    """``preview --json`` for shot010: every task command names the license server and a config
    file, and hands the render package to the wrapper, which runs the renderer on its file name
    from its folder (the test above shows what the renderer receives)."""
    catalog = tmp_path / "catalog.json"
    catalog.write_text(fixture_catalog().model_dump_json())
    finished = subprocess.run(
        [
            *(sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"),
            *("preview", str(EXAMPLE / "job.yaml"), "--catalog", str(catalog), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home")},
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    bodies = json.loads(finished.stdout)["payloads"]
    commands = [task["command"] for body in bodies.values() for task in body["tasks_data"]]
    assert len(commands) == 5
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ["sh", str(WRAPPER_PATH)]
        after = words[words.index("--") + 1 :]
        assert after[0] == "cnode" and after[1].endswith("/shot010.lighting.cio.project")
        assert after[after.index("-license_server") + 1] == "conductor_ilise:40500"
        config = after[after.index("-config_file") + 1]
        assert config.endswith("/jobs.cfg") and config in {
            entry["destination"] for entry in bodies["scout"]["upload_files"]
        }
