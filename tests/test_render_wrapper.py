"""The render wrapper: shot010's produced commands run against a stand-in host renderer.

The stand-in ``cnode`` records the arguments, the working folder and the license variable it
received; the test checks what the wrapper did before handing over (output folders, tile flag,
config file, license server), from a project folder whose path holds spaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.loaders import load_job, load_scene
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.submission.prepare import Preview, build_preview
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shot010"
STANDIN = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps({{"argv": sys.argv[1:],
                               "license": os.environ.get("JOBS_LICENSE")}}) + "\\n")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """shot010 copied under a folder with spaces, with a config file and no output folders."""
    folder = tmp_path / "my projects" / "shot 010"
    shutil.copytree(EXAMPLE, folder)
    shutil.rmtree(folder / "renders")
    (folder / "jobs.cfg").write_text("[prefs]\n")
    return folder


@pytest.fixture
def host_bin(tmp_path: Path) -> Path:
    """A folder holding the stand-in ``cnode``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    cnode = folder / "cnode"
    cnode.write_text(STANDIN.format(python=sys.executable))
    cnode.chmod(0o755)
    return folder


def shot010_preview(project: Path, **job_changes: Any) -> Preview:
    job = load_job(project / "job.yaml").model_copy(update=job_changes)
    scene = load_scene(project / "scene_export.json")
    scene = scene.model_copy(update={"config_file": str(project / "jobs.cfg")})
    return build_preview(job, scene, fixture_catalog())


def run_task(body: dict[str, Any], index: int, host_bin: Path, log: Path) -> subprocess.Popen[str]:
    """Run one task's command the way a render node does: bash, the job's environment."""
    environment = dict(body["environment"])
    environment["PATH"] = os.pathsep.join(
        [str(host_bin), environment.get("PATH", ""), os.environ["PATH"]]
    )
    environment["STANDIN_LOG"] = str(log)
    return subprocess.Popen(
        ["bash", "-c", body["tasks_data"][index]["command"]],
        env=environment,
        cwd=log.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.usefixtures("cli_subprocess")
def test_shot010_tasks_run_the_host_with_folders_config_and_license(
    project: Path, host_bin: Path, tmp_path: Path
) -> None:
    preview = shot010_preview(project)
    log = tmp_path / "calls.jsonl"
    for step, body in preview.bodies.items():
        for index in range(len(body["tasks_data"])):
            process = run_task(body, index, host_bin, log)
            _, err = process.communicate()
            assert process.returncode == 0, (step, err)
    assert (project / "renders" / "beauty").is_dir()
    assert (project / "renders" / "shadow").is_dir()
    calls = received(log)
    assert len(calls) == 5
    first = calls[0]  # the scout job's first task: frames 3-4
    assert first["argv"] == [
        str(project / "shot010.lighting.cio.project"),
        "-image",
        "project://scene/beauty",
        "project://scene/shadow",
        "-image_frames_list",
        "3:4",
        "3:4",
        "-log_width",
        "0",
        "-config_file",
        str(project / "jobs.cfg"),
        "-license_server",
        "conductor_license:40500",
    ]
    assert first["license"] == "conductor_license:40500"
    assert all("-tile_rendering" not in call["argv"] for call in calls)


@pytest.mark.usefixtures("cli_subprocess")
def test_tiles_keep_the_tile_flag_with_each_tasks_tile(
    project: Path, host_bin: Path, tmp_path: Path
) -> None:
    preview = shot010_preview(project, tiles=4, use_scout_frames=False)
    log = tmp_path / "calls.jsonl"
    body = preview.bodies["full"]
    for index in range(4):
        process = run_task(body, index, host_bin, log)
        assert process.wait() == 0
    tiles = [call["argv"][call["argv"].index("-tile_rendering") :][:3] for call in received(log)]
    assert tiles == [["-tile_rendering", "4", str(n)] for n in range(1, 5)]


def test_the_wrapper_is_uploaded_with_the_job(project: Path) -> None:
    preview = shot010_preview(project)
    destinations = {entry["destination"] for entry in preview.bodies["scout"]["upload_files"]}
    assert str(WRAPPER_PATH) in destinations
    assert str(project / "jobs.cfg") in destinations
    assert str(project / "cache" / "sim.0011.abc") in destinations  # motion blur of frame 10


@pytest.mark.usefixtures("cli_subprocess")
def test_a_missing_config_file_on_the_node_fails_the_task_with_one_line(
    host_bin: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    finished = subprocess.run(
        [
            sys.executable,
            str(WRAPPER_PATH),
            *("--config-file", str(tmp_path / "none.cfg")),
            *("--", "cnode", "pkg"),
        ],
        env={"PATH": f"{host_bin}{os.pathsep}{os.environ['PATH']}", "STANDIN_LOG": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [
        f"conductor_render: config file {tmp_path / 'none.cfg'} is missing"
    ]
    assert not log.exists()


@pytest.mark.usefixtures("cli_subprocess")
def test_a_command_that_names_its_own_license_server_keeps_it(
    host_bin: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    subprocess.run(
        [sys.executable, str(WRAPPER_PATH), "--", "cnode", "p", "-license_server", "mine:1"],
        env={
            "PATH": f"{host_bin}{os.pathsep}{os.environ['PATH']}",
            "STANDIN_LOG": str(log),
            "JOBS_LICENSE": "farm:40500",
        },
        check=True,
        capture_output=True,
    )
    assert received(log)[0]["argv"] == ["p", "-license_server", "mine:1"]


def test_a_relative_config_file_is_anchored_at_the_export_folder(project: Path) -> None:
    export = json.loads((project / "scene_export.json").read_text())
    export["config_file"] = "jobs.cfg"
    (project / "scene_export.json").write_text(json.dumps(export))
    assert load_scene(project / "scene_export.json").config_file == str(project / "jobs.cfg")
