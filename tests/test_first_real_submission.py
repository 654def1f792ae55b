"""The first real submission renders: the sample scene, kept under folders whose names hold a space,
submitted from the command line to a sandbox started with no configuration, renders on the
sandbox's stand-in nodes through the real task command, and every frame of both images comes down
and is checked.

The render package is the one the stand-in host writes (each image's Save As and frame range, as
a real project holds them); nothing tells the sandbox where frames go.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.loaders import load_scene
from tests.scenes import EXAMPLES

JOB_LINE = re.compile(r"^(scout|full) job (\d{5}): ", re.MULTILINE)
CLI = Path(sys.executable).with_name("prefect-conductor")

pytestmark = pytest.mark.e2e


def host_writes_the_package(host: Any, copy: Path) -> None:
    """The stand-in host saves the copy's images into its render package."""
    scene = load_scene(copy / "scene_export.json")
    for image in scene.images:
        item = host.ui_create("Image", image.path.rpartition("/")[2])
        host.ui_set(item, "render_to_disk", True)
        host.ui_set(item, "save_as", image.save_as)
        host.ui_set(item, "first_frame", image.first_frame)
        host.ui_set(item, "last_frame", image.last_frame)
    assert host.save_project(scene.render_package)


def start_sandbox(data: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``prefect-conductor sandbox`` with nothing but a free port and a data folder; the
    variables it prints."""
    process = subprocess.Popen(
        [str(CLI), "sandbox", "--port", "0", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "CONDUCTOR_API_KEY_PATH" not in printed:
        line = process.stdout.readline()
        assert line, "the sandbox stopped before it printed its address"
        if line.strip().startswith("export "):
            name, _, value = line.strip().removeprefix("export ").partition("=")
            printed[name] = value
    return process, printed


def test_the_sample_under_a_folder_with_a_space_renders_and_every_frame_comes_down(
    prefect_server: str, host: Any, tmp_path: Path
) -> None:
    copy = tmp_path / "my shots" / "shot 010"
    shutil.copytree(EXAMPLES, copy)
    shutil.rmtree(copy / "renders")
    host_writes_the_package(host, copy)
    sandbox, printed = start_sandbox(tmp_path / "sandbox data")
    env = {
        **os.environ,
        **printed,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home with space"),
    }
    env.pop("CONDUCTOR_API_KEY", None)
    try:
        submitted = subprocess.run(
            [str(CLI), "submit", str(copy / "job.yaml"), "--poll-seconds", "0.2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        jobs = dict(JOB_LINE.findall(submitted.stdout))
        assert set(jobs) == {"scout", "full"}
        out = tmp_path / "down loads"
        for jid in jobs.values():
            fetched = subprocess.run(
                [
                    *(str(CLI), "download", jid, "--output", str(out)),
                    *("--scene", str(copy / "scene_export.json"), "--wait", "300"),
                    *("--poll-seconds", "0.2"),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert fetched.returncode == 0, fetched.stderr[-3000:]
            assert "beauty: " in fetched.stdout and "shadow: " in fetched.stdout
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    frames = {
        (path.parent.name, path.name)
        for jid in jobs.values()
        for path in (out / jid).rglob("*.exr")
    }
    expected = {
        (image, f"{image}.{frame:04d}.exr")
        for image in ("beauty", "shadow")
        for frame in range(1, 11)
    }
    assert frames == expected
    for jid in jobs.values():
        for path in (out / jid).rglob("*.exr"):
            assert path.read_bytes()[:4] == b"v/1\x01"  # a real OpenEXR file
