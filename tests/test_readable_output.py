"""What people read: the upload table, preview's summary, the frames command's scout warning and
the validation warning for frames typed in while their switch is off."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from prefect_conductor.cli.main import app
from prefect_conductor.conductor_cloud.job.catalog import save_catalog
from prefect_conductor.conductor_cloud.job.validation import validate
from prefect_conductor.conductor_cloud.submission.payload import UploadEntry
from prefect_conductor.conductor_cloud.submission.preview_text import upload_rows, wrapped
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from tests.scenes import EXAMPLES, make_job, make_scene


def entry(path: str, size: int = 100, md5: str = "bWQ1") -> UploadEntry:
    return UploadEntry(path=path, md5=md5, stat={"st_size": size, "st_mtime": 1.0})


def test_a_thousand_frames_are_one_row_and_single_files_keep_their_md5() -> None:
    frames = [entry(f"/show/tex/wood.{n:04d}.exr") for n in range(1001, 2001)]
    rows = upload_rows([*frames, entry("/show/scene.project", 2048, "c2NlbmU=")])
    assert rows == [
        {"path": "/show/scene.project", "files": 1, "size": "2.0 KB", "md5": "c2NlbmU="},
        {
            "path": "/show/tex/wood.1001-2000#.exr",
            "files": 1000,
            "size": "97.7 KB",
            "md5": "(1000 files)",
        },
    ]


def test_long_commands_wrap_between_words() -> None:
    command = "cnode " + " ".join(f"-flag{n} value{n}" for n in range(30))
    lines = wrapped(command).splitlines()
    assert len(lines) > 1 and all(len(line) <= 96 for line in lines)
    assert " ".join(line.strip() for line in lines) == command


def test_preview_text_says_no_problems_and_lists_uploads_as_a_table(tmp_path: Path) -> None:
    catalog = save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    result = CliRunner().invoke(
        app,
        ["preview", str(EXAMPLES / "job.yaml"), "--catalog", str(catalog)],
        env={"PREFECT_CONDUCTOR_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 0, result.output
    assert "Validation: no problems found" in result.output
    assert "sim.1-12#.abc" in result.output  # every cache frame the pattern matches, one row
    assert "st_mtime" not in result.output and "st_ino" not in result.output


def test_frames_warns_when_the_scout_frames_are_outside() -> None:
    result = CliRunner().invoke(app, ["frames", "1-10", "--scout", "20"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "0 Scout / 10 Frames -- 2 Chunks -- 1-10"
    assert "scout frames 20 are not among the frames 1-10" in result.stderr


def test_frames_typed_in_while_their_switch_is_off_are_a_warning(tmp_path: Path) -> None:
    job = make_job(use_custom_frames=False, custom_frames="1-3", use_scout_frames=False)
    job = job.model_copy(update={"scout_frames": "2"})
    report, _ = validate(job, make_scene(tmp_path), fixture_catalog())
    fields = {(f.severity, f.field) for f in report.findings}
    assert ("warning", "use_custom_frames") in fields
    assert ("warning", "use_scout_frames") in fields


def test_params_prints_the_deployment_run_parameters(tmp_path: Path) -> None:
    import json

    from prefect_conductor.conductor_cloud.job.model import ConductorJob
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource

    result = CliRunner().invoke(
        app, ["params", str(EXAMPLES / "job.yaml"), "--credentials-block", "studio-farm"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["scene"] == {"export_path": str(EXAMPLES / "scene_export.json")}
    assert document["options"] == {"credentials_block": "studio-farm"}
    assert ConductorJob.model_validate(document["job"]).title == "shot010 lighting v012"
    SceneSource.model_validate(document["scene"])
    RunOptions.model_validate(document["options"])
