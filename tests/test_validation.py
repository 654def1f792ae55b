"""Each validation rule, one finding at a time, naming its field and severity."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import ValidationFailed
from prefect_conductor.conductor_cloud.job.model import ConductorJob, EnvironmentVariable
from prefect_conductor.conductor_cloud.job.scene import ImageExport, SceneExport
from prefect_conductor.conductor_cloud.job.validation import ValidationReport, validate
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from tests.scenes import make_job, make_scene


def run(job: ConductorJob, scene: SceneExport, catalog: object = "fixture") -> ValidationReport:
    report, _ = validate(job, scene, fixture_catalog() if catalog == "fixture" else None)
    return report


def found(report: ValidationReport, severity: str, field: str, text: str = "") -> bool:
    return any(
        f.severity == severity and f.field == field and text in f.message for f in report.findings
    )


def test_the_quick_start_is_clean(tmp_path: Path) -> None:
    report = run(make_job(), make_scene(tmp_path))
    assert report.ok, report.to_text()
    assert not report.warnings, report.to_text()


def test_no_images(tmp_path: Path) -> None:
    assert found(run(make_job(images=[]), make_scene(tmp_path)), "error", "images", "no images")


def test_image_not_in_scene(tmp_path: Path) -> None:
    job = make_job(images=["project://scene/beauty", "project://scene/ghost"])
    assert found(run(job, make_scene(tmp_path)), "error", "images[1]", "not in the scene")


def image(tmp_path: Path, **changes: object) -> ImageExport:
    fields: dict[str, object] = {
        "path": "project://scene/beauty",
        "render_to_disk": True,
        "save_as": str(tmp_path / "renders" / "b.####.exr"),
        "first_frame": 1,
        "last_frame": 10,
    }
    fields.update(changes)
    return ImageExport.model_validate(fields)


def test_render_to_disk_off(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, images=[image(tmp_path, render_to_disk=False)])
    report = run(make_job(images=["project://scene/beauty"]), scene)
    assert found(report, "error", "images[0]", "Render To Disk off")


def test_save_as_missing(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, images=[image(tmp_path, save_as="")])
    report = run(make_job(images=["project://scene/beauty"]), scene)
    assert found(report, "error", "images[0]", "no Save As")


def test_save_as_is_a_folder(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, images=[image(tmp_path, save_as=str(tmp_path / "renders"))])
    report = run(make_job(images=["project://scene/beauty"]), scene)
    assert found(report, "error", "images[0]", "is a folder")


def test_outputs_without_common_folder(tmp_path: Path) -> None:
    images = [
        image(tmp_path, save_as="/a.####.exr"),
        image(tmp_path, path="project://scene/shadow", save_as="/b/s.####.exr"),
    ]
    report = run(make_job(), make_scene(tmp_path, images=images))
    assert found(report, "error", "images", "no common folder")


def test_bad_frames_from_images(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, images=[image(tmp_path, first_frame=5, last_frame=1)])
    report = run(make_job(images=["project://scene/beauty"], use_custom_frames=False), scene)
    assert not report.ok


def test_scout_frames_all_outside(tmp_path: Path) -> None:
    report = run(make_job(scout_frames="20,30"), make_scene(tmp_path))
    assert found(report, "error", "scout_frames", "none of the scout frames")


def test_scout_frames_partly_outside(tmp_path: Path) -> None:
    report = run(make_job(scout_frames="3,30"), make_scene(tmp_path))
    assert report.ok
    assert found(report, "warning", "scout_frames", "30")


def test_scout_switched_on_without_frames(tmp_path: Path) -> None:
    report = run(make_job(scout_frames=""), make_scene(tmp_path))
    assert found(report, "warning", "scout_frames", "no scout frames")


def test_many_tasks_get_a_notice(tmp_path: Path) -> None:
    report = run(
        make_job(custom_frames="1-1001", chunk_size=1, scout_frames="3"), make_scene(tmp_path)
    )
    assert report.ok
    assert found(report, "notice", "chunk_size", "1001 tasks")


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"project": "no-such-project"}, "project", "no-such-project"),
        ({"project": None}, "project", "no project"),
        ({"instance_type": "z9-giant"}, "instance_type", "z9-giant"),
        ({"instance_type": None}, "instance_type", "no instance type"),
        ({"host_package": "jobs 0.0.1 linux"}, "host_package", "jobs 0.0.1 linux"),
        ({"plugin_packages": ["nope 1.0 linux"]}, "plugin_packages[0]", "nope 1.0 linux"),
        ({"notify": ["not-an-address"]}, "notify[0]", "not an e-mail"),
        ({"task_template": "cnode <render_package> <bogus>"}, "task_template", "bogus"),
    ],
)
def test_catalogue_and_field_errors(
    tmp_path: Path, changes: dict[str, object], field: str, text: str
) -> None:
    report = run(make_job(**changes), make_scene(tmp_path))
    assert found(report, "error", field, text), report.to_text()


def test_environment_conflict(tmp_path: Path) -> None:
    env = [
        EnvironmentVariable(name="SHOT_ROOT", value="/a", merge_policy="exclusive"),
        EnvironmentVariable(name="SHOT_ROOT", value="/b", merge_policy="append"),
    ]
    report = run(make_job(environment=env), make_scene(tmp_path))
    assert any(f.severity == "error" and "SHOT_ROOT" in f.message for f in report.findings)


def test_missing_dependency_is_a_warning(tmp_path: Path) -> None:
    scene = make_scene(tmp_path)
    scene = scene.model_copy(
        update={"dependencies": [*scene.dependencies, str(tmp_path / "gone.abc")]}
    )
    report = run(make_job(), scene)
    assert report.ok
    assert found(report, "warning", "dependencies", "gone.abc")


def test_missing_render_package_is_an_error(tmp_path: Path) -> None:
    scene = make_scene(tmp_path, render_package=str(tmp_path / "missing.cio.project"))
    assert found(run(make_job(), scene), "error", "render_package", "does not exist")


def test_without_catalogue_project_is_not_checked_but_said(tmp_path: Path) -> None:
    report = run(make_job(), make_scene(tmp_path), catalog=None)
    assert found(report, "warning", "project", "Refresh")


def test_errors_raise_one_line_naming_the_field(tmp_path: Path) -> None:
    report = run(make_job(images=[], notify=["bad"]), make_scene(tmp_path))
    with pytest.raises(ValidationFailed) as caught:
        report.raise_for_errors()
    assert str(caught.value).startswith("images: no images")
    assert "1 more error" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_files_are_collected_with_the_render_package(tmp_path: Path) -> None:
    _, ctx = validate(make_job(), make_scene(tmp_path), fixture_catalog())
    assert ctx.files is not None
    names = sorted(p.name for p in ctx.files.files)
    assert names == ["shot.cio.project", "wood.1001.tx"]
