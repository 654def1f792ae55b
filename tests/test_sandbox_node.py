"""The sandbox's stand-in render node on its own: the uploads' layout, rooted commands, the
stand-in renderer, and the cleaned config file every task renders with."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.job.render_wrapper.host_config import cleaned_config
from prefect_conductor.sandbox.node.layout import LayoutError, node_file, rooted, stand_in_bin
from prefect_conductor.sandbox.node.package import write_package
from tests.scenes import make_scene

# Each test runs the wrapper, the stand-in renderer or pip in a subprocess: the slow tier.
pytestmark = pytest.mark.usefixtures("cli_subprocess")


def test_uploads_are_mounted_below_the_root_without_the_drive(tmp_path: Path) -> None:
    assert node_file(tmp_path, "C:/proj/shot 010/a.tx") == tmp_path / "proj" / "shot 010" / "a.tx"
    assert node_file(tmp_path, "/mnt/a.tx") == tmp_path / "mnt" / "a.tx"
    for bad in ("/proj/../../etc/passwd", "relative/a.tx", ""):
        with pytest.raises(LayoutError):
            node_file(tmp_path, bad)


def test_absolute_paths_in_a_command_are_taken_below_the_root() -> None:
    command = "sh /w/run.sh --mkdir '/p/my shot/r' -- cnode /p/s.project -image project://scene/a"
    assert shlex.split(rooted(command, "/n")) == [
        *("sh", "/n/w/run.sh", "--mkdir", "/n/p/my shot/r", "--", "cnode", "/n/p/s.project"),
        *("-image", "project://scene/a"),
    ]


def run_cnode(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    cnode = stand_in_bin(folder.parent / "bin") / "cnode"
    return subprocess.run(
        [str(cnode), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **env},
        check=False,
    )


def test_the_stand_in_renderer_writes_each_frame_at_the_packages_save_as(tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "shot")
    done = run_cnode(
        tmp_path / "shot",
        *("shot.cio.project", "-image", "project://scene/beauty", "project://scene/shadow"),
        *("-image_frames_list", "3:4", "3:4", "-log_width", "0"),
    )
    assert done.returncode == 1  # the shadow's folder does not exist: the host writes none
    assert "its folder does not exist" in done.stdout
    (tmp_path / "shot" / "renders" / "shadow").mkdir()
    done = run_cnode(
        tmp_path / "shot",
        *("shot.cio.project", "-image", "project://scene/beauty", "project://scene/shadow"),
        *("-image_frames_list", "3:4", "3:4"),
    )
    assert done.returncode == 0, done.stdout
    written = sorted(p.name for p in (tmp_path / "shot" / "renders").rglob("*.exr"))
    assert written == ["beauty.0003.exr", "beauty.0004.exr", "shadow.0003.exr", "shadow.0004.exr"]
    assert Path(scene.images[0].save_as.replace("####", "0003")).read_bytes()[:4] == b"v/1\x01"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["my shot.project"], "the path holds a space"),
        (["missing.project", "-image", "x", "-image_frames_list", "1"], "no such file"),
        (
            ["shot.cio.project", "-image", "project://scene/nope", "-image_frames_list", "1"],
            "no image",
        ),
        (
            [
                *("shot.cio.project", "-image", "project://scene/beauty"),
                *("-image_frames_list", "1", "-config_file", "/none.cfg"),
            ],
            "cannot read config file",
        ),
    ],
)
def test_the_stand_in_renderer_fails_like_the_host_in_one_line(
    tmp_path: Path, args: list[str], said: str
) -> None:
    make_scene(tmp_path / "shot")
    done = run_cnode(tmp_path / "shot", *args)
    assert done.returncode == 1 and said in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1


def test_a_failing_frame_fails_the_render_when_reached(tmp_path: Path) -> None:
    make_scene(tmp_path / "shot")
    done = run_cnode(
        tmp_path / "shot",
        *("shot.cio.project", "-image", "project://scene/beauty", "-image_frames_list", "1:3"),
        SANDBOX_FAIL_FRAMES="2",
    )
    assert done.returncode == 1
    assert done.stdout.strip().splitlines()[-1] == (
        "cnode: project://scene/beauty frame 2: the render failed"
    )
    assert (tmp_path / "shot" / "renders" / "beauty.0001.exr").is_file()


def test_the_package_holds_each_images_save_as_and_range(tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "shot")
    write_package(tmp_path / "p.project", scene)
    items = json.loads((tmp_path / "p.project").read_text())["items"]
    assert [(i["context"], i["name"]) for i in items] == [
        ("project://scene", "beauty"),
        ("project://scene", "shadow"),
    ]
    assert items[0]["attributes"]["save_as"]["values"] == [scene.images[0].save_as]
    assert items[0]["attributes"]["last_frame"]["values"] == [10]


def test_the_config_loses_the_interfaces_blocks_and_drive_letters() -> None:
    text = (
        "prefs {\n  path C:/proj/tex\n  win D:\\proj\\tex\n}\n"
        "layout {\n  inner {\n    x 1\n  }\n}\n"
        "command_port {\n  port 55000\n}\n"
        "after {\n}\n"
    )
    assert cleaned_config(text) == ("prefs {\n  path /proj/tex\n  win \\proj\\tex\n}\nafter {\n}\n")
    assert cleaned_config("") == ""


def test_the_node_runs_with_this_python(tmp_path: Path) -> None:
    script = (stand_in_bin(tmp_path) / "cnode").read_text()
    assert shlex.quote(sys.executable) in script


def test_node_settings_are_checked() -> None:
    from prefect_conductor.sandbox.store import validate_settings

    assert validate_settings({"instances": 3, "frame_seconds": 0.5}) == {
        "instances": 3,
        "frame_seconds": 0.5,
    }
    for bad, said in (
        ({"instances": 0}, "instances must be a whole number from 1 to 64"),
        ({"instances": 1.5}, "instances must be a whole number from 1 to 64"),
        ({"frame_seconds": -1}, "frame_seconds must be a finite number >= 0"),
        ({"save_as": {}}, "unknown setting 'save_as'"),
    ):
        with pytest.raises(ValueError, match=said):
            validate_settings(bad)
