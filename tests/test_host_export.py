"""The batch exporter, run the way export_scene runs it: a host command line in a child process.

The project is built and saved in the stand-in host; the child process is the stand-in host in
batch mode (``python -m prefect_conductor.host_export.batch_export``, with the stand-in as ``ix``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.loaders import load_scene
from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
from prefect_conductor.conductor_cloud.job.validation import validate
from prefect_conductor.conductor_cloud.transfers.staging import export_scene
from prefect_conductor.host_export.exporter import render_package_name
from prefect_conductor.host_export.node_paths import linux_path, linux_text, resolve_variables
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from tests.host_standin.fixtures import standin_environment
from tests.scenes import make_job

EXPORTER = [sys.executable, "-m", "prefect_conductor.host_export.batch_export"]


def set_value(item: Any, name: str, value: str) -> None:
    attribute = item.get_attribute(name)
    assert attribute is not None
    attribute.set_string(value)


def build_project(app: Any, root: Path) -> Path:
    """Images, textures (UDIM, expression, relative), a Windows cache path, colour files."""
    for relative in ("tex/wood.1001.tx", "tex/wood.1002.tx", "tex/relative.tx", "grade.cdl"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(relative)
    for frame in range(1, 11):
        (root / "tex" / f"rock.{frame:04d}.tx").write_text(f"rock {frame}")
    (root / "shaders").mkdir()
    (root / "shaders" / "lib.osl").write_text("shader")
    (root / "ocio" / "luts").mkdir(parents=True)
    (root / "ocio" / "config.ocio").write_text("ocio_profile_version: 2")
    (root / "ocio" / "luts" / "film.cube").write_text("LUT")
    (root / "mapping.txt").write_text("mapping")
    beauty = app.ui_create("Image", "beauty")
    app.ui_set(beauty, "render_to_disk", True)
    app.ui_set(beauty, "save_as", "$PDIR/renders/beauty.####.exr")
    app.ui_set(beauty, "last_frame", 10)
    layer = app.ui_create("Layer3d", "shadow")
    app.ui_set(layer, "render_to_disk", True)
    app.ui_set(layer, "save_as", "renders/shadow/shadow.####.exr")
    app.ui_set(layer, "first_frame", 5)
    app.ui_set(layer, "last_frame", 10)
    wood = app.ui_create("TextureMapFile", "wood")
    app.ui_set(wood, "filename", "$PDIR/tex/wood.<UDIM>.tx")
    set_value(wood, "filename_sys", "/host/private/copy.tx")
    rock = app.ui_create("TextureMapFile", "rock")
    expression = rock.get_attribute("filename")
    expression.set_expression("$PDIR/tex/rock.$4F.tx")
    expression.enable_expression(True)
    expression.activate_expression(True)
    relative = app.ui_create("TextureMapFile", "relative")
    app.ui_set(relative, "filename", "tex/relative.tx")
    cache = app.ui_create("GeometryBundleAlembic", "sim")
    app.ui_set(cache, "filename", "C:\\cache\\sim.####.abc")
    unused = app.ui_create("GeometryBundleAlembic", "unused")
    app.ui_set(unused, "filename", "/nowhere/unused.abc")
    unused.set_disabled(True)
    library = app.ui_create("ShaderLibrary", "library")
    app.ui_set(library, "search_path", "$PDIR/shaders")
    job = app.ui_create("ConductorJob", "ConductorJob")
    app.ui_set(job, "title", "shot010 lighting")
    app.set_colour_management(
        ocio_config=str(root / "ocio" / "config.ocio"),
        cdl_library=str(root / "grade.cdl"),
        mapping=str(root / "mapping.txt"),
    )
    project = root / "shot010.project"
    assert app.save_project(str(project))
    return project


def run_exporter(project: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPORTER, "--project", str(project), "--output", str(output), *extra],
        env=standin_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("cli_subprocess")
def test_the_exporter_writes_the_scene_export_and_the_render_package(
    host: Any, tmp_path: Path
) -> None:
    root = tmp_path / "shot010"
    root.mkdir()
    project = build_project(host, root)
    before = (project.read_bytes(), project.stat().st_mtime_ns)
    output = tmp_path / "export"
    finished = run_exporter(project, output)
    assert finished.returncode == 0, finished.stderr
    written = Path(finished.stdout.strip())
    assert written == output / "scene_export.json"
    scene = load_scene(written)  # validates as SceneExport
    package = output / "shot010.shot010_lighting.cio.project"
    assert scene.render_package == str(package) and package.is_file()
    assert scene.project_path == str(project)
    assert scene.host.version == "5.0.10"
    assert set(scene.dependencies) == {
        f"{root}/tex/wood.<UDIM>.tx",  # a UDIM pattern stays a pattern
        f"{root}/tex/rock.####.tx",  # an expression's $4F is read back as ####
        f"{root}/tex/relative.tx",  # relative to the project's folder
        "C:\\cache\\sim.####.abc",  # as readable where the export runs
        f"{root}/shaders",  # a folder attribute
        f"{root}/ocio",  # the OCIO config's whole folder (its LUTs)
        f"{root}/grade.cdl",
        f"{root}/mapping.txt",
    }
    images = {image.path: image for image in scene.images}
    assert images["project://scene/beauty"].save_as == f"{root}/renders/beauty.####.exr"
    assert images["project://scene/shadow"].save_as == f"{root}/renders/shadow/shadow.####.exr"
    assert images["project://scene/shadow"].first_frame == 5
    assert scene.variables["PDIR"] == str(root)
    # The render package: Linux paths, variables resolved, no ConductorJob, outputs absolute.
    content = json.loads(package.read_text())
    items = {item["name"]: item for item in content["items"]}
    assert "ConductorJob" not in items
    assert items["sim"]["attributes"]["filename"]["values"] == ["/cache/sim.####.abc"]
    assert items["wood"]["attributes"]["filename"]["values"] == [f"{root}/tex/wood.<UDIM>.tx"]
    assert items["rock"]["attributes"]["filename"]["expression"] == f"{root}/tex/rock.$4F.tx"
    assert items["shadow"]["attributes"]["save_as"]["values"] == [
        f"{root}/renders/shadow/shadow.####.exr"
    ]
    # The artist's project was only read.
    assert (project.read_bytes(), project.stat().st_mtime_ns) == before


@pytest.mark.usefixtures("cli_subprocess")
def test_export_scene_runs_the_exporter_and_validation_finds_every_file(
    host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "shot010"
    root.mkdir()
    project = build_project(host, root)
    monkeypatch.setenv("PYTHONPATH", standin_environment()["PYTHONPATH"])
    source = SceneSource(project_path=str(project), host_command=EXPORTER)
    scene = export_scene(source, str(tmp_path / "staging"))
    assert Path(scene.render_package).parent.parent == tmp_path / "staging"  # staged by hash
    job = make_job(
        images=["project://scene/beauty", "project://scene/shadow"],
        custom_frames="1-4",
        scout_frames="2",
    )
    report, context = validate(job, scene, fixture_catalog())
    assert context.files is not None
    names = {path.name for path in context.files.files}
    assert {"wood.1001.tx", "wood.1002.tx", "relative.tx", "lib.osl", "film.cube"} <= names
    assert {f"rock.{frame:04d}.tx" for frame in range(1, 5)} <= names
    assert "rock.0005.tx" in names  # every file the pattern matches, as the reference
    missing = [f.message for f in report.warnings if f.field == "dependencies"]
    assert any("no files match" in line and "sim.####.abc" in line for line in missing)


@pytest.mark.usefixtures("cli_subprocess")
def test_a_missing_project_is_one_line_and_exit_2(tmp_path: Path) -> None:
    finished = run_exporter(tmp_path / "gone.project", tmp_path / "out")
    assert finished.returncode == 2
    assert (
        finished.stderr.strip() == f"error: --project: {tmp_path / 'gone.project'} does not exist"
    )


@pytest.mark.usefixtures("cli_subprocess")
def test_a_file_that_is_not_a_project_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.project"
    bad.write_text("not a project")
    finished = run_exporter(bad, tmp_path / "out")
    assert finished.returncode == 2
    assert finished.stderr.strip() == f"error: the host could not load the project {bad}"


@pytest.mark.usefixtures("cli_subprocess")
def test_the_title_option_names_the_package(host: Any, tmp_path: Path) -> None:
    root = tmp_path / "shot"
    root.mkdir()
    project = build_project(host, root)
    finished = run_exporter(project, tmp_path / "out", "--title", "Final: v2")
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "out" / "shot010.Final_v2.cio.project").is_file()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("C:\\shows\\shot\\tex.tx", "/shows/shot/tex.tx"),
        ("d:/cache/sim.####.abc", "/cache/sim.####.abc"),
        ("\\\\server\\share\\x.exr", "//server/share/x.exr"),
        ("/already/linux.tx", "/already/linux.tx"),
        ("relative/path.tx", "relative/path.tx"),
        ("C:", "/"),
    ],
)
def test_paths_for_linux_render_nodes(path: str, expected: str) -> None:
    assert linux_path(path) == expected


def test_windows_paths_inside_text_and_project_variables() -> None:
    assert linux_text('"C:\\a\\b.tx" + D:/c.tx') == '"/a/b.tx" + /c.tx'
    variables = {"PDIR": "/show", "F4": "nope"}
    assert resolve_variables("$PDIR/x.$F.$4F.${PDIR}.$OTHER", variables) == (
        "/show/x.$F.$4F./show.$OTHER"
    )
    assert render_package_name("C:\\shows\\shot 010.project", "shot010 lighting v2") == (
        "shot_010.shot010_lighting_v2.cio.project"
    )
