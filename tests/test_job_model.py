"""ConductorJob and the job/scene file loaders: defaults, descriptions, one line per problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from prefect_conductor.conductor_cloud.errors import InputFileError
from prefect_conductor.conductor_cloud.job.loaders import load_job, load_scene
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from tests.scenes import EXAMPLES


def test_defaults_follow_the_reference_submitter() -> None:
    job = ConductorJob()
    assert (job.chunk_size, job.preemptible, job.retries, job.tiles, job.priority) == (
        5,
        True,
        1,
        1,
        5,
    )
    assert job.scout_mode == "gated" and job.approval == "auto"
    assert (job.rerender_attempts, job.rerender_on_demand) == (1, True)
    assert not job.scouting


def test_every_field_has_hover_text() -> None:
    missing = [name for name, f in ConductorJob.model_fields.items() if not f.description]
    assert missing == []


def test_the_run_form_schema_reads_right_in_the_prefect_ui() -> None:
    """The form labels every field outside ``required`` "(Optional)"; it renders descriptions as
    Markdown (a bare ``<UDIM>`` vanishes as an HTML tag); it has no Refresh button and no hover."""
    from prefect.utilities.callables import parameter_schema

    from prefect_conductor.flows.render_submit import render_submit

    schema = parameter_schema(render_submit).model_dump()
    job = schema["definitions"]["ConductorJob"]
    assert set(job["required"]) == {"images", "project", "instance_type"}
    texts = [job["description"], schema["properties"]["job"]["description"]]
    for definition in schema["definitions"].values():
        texts += [p.get("description", "") for p in definition.get("properties", {}).values()]
    for text in texts:
        assert "refresh" not in text.lower() and "hover" not in text.lower(), text
        outside_code = re.sub(r"`[^`]*`", "", text)
        assert not re.search(r"<[A-Za-z_]+>", outside_code), text
    assert "`<UDIM>`" in job["properties"]["extra_uploads"]["description"]


def test_the_sample_sets_only_what_the_quick_start_changes() -> None:
    """Every field the sample job does not set keeps its default, as in the run form."""
    job = load_job(EXAMPLES / "job.yaml")
    defaults = ConductorJob()
    changed = {
        name for name in ConductorJob.model_fields if getattr(job, name) != getattr(defaults, name)
    }
    assert changed == {
        "title", "images", "project", "use_custom_frames", "chunk_size", "use_scout_frames",
        "scout_frames", "instance_type", "host_version", "metadata", "notify",
    }  # fmt: skip
    assert job.as_run_parameter().keys() == changed


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ConductorJob.model_validate({"chunksize": 2})


def test_scouting_needs_switch_spec_and_mode() -> None:
    assert ConductorJob(use_scout_frames=True, scout_frames="3").scouting
    assert not ConductorJob(use_scout_frames=True, scout_frames="3", scout_mode="off").scouting
    assert not ConductorJob(use_scout_frames=False, scout_frames="3").scouting


def test_example_job_and_scene_load() -> None:
    job = load_job(EXAMPLES / "job.yaml")
    scene = load_scene(EXAMPLES / "scene_export.json")
    assert job.custom_frames == "1-10" and job.chunk_size == 2
    assert Path(scene.render_package).is_absolute()
    assert Path(scene.render_package).is_file()
    assert all(Path(image.save_as).is_absolute() for image in scene.images)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("chunk_size: 0\n", "job.yaml: chunk_size: Input should be greater than or equal to 1"),
        ("custom_frames: 1-10y2\n", "job.yaml: custom_frames:"),
        ("environment:\n  - {name: 9BAD, value: x}\n", "job.yaml: environment[0].name:"),
        ('title: "a\\nb"\n', "job.yaml: title: Value error"),
        ("chunksize: 2\n", "job.yaml: chunksize: unknown field"),
        ('metadata: {"bad key": x}\n', "job.yaml: metadata:"),
        ("rerender_attempts: 6\n", "job.yaml: rerender_attempts: Input should be less than"),
        ("rerender_attempts: -1\n", "job.yaml: rerender_attempts: Input should be greater"),
        ("rerender_on_demand: maybe\n", "job.yaml: rerender_on_demand:"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(InputFileError) as caught:
        load_job(path)
    problems = [p.replace(str(tmp_path) + "/", "") for p in caught.value.problems]
    assert any(p.startswith(expected.split(": Value error")[0]) for p in problems), problems
    assert all("\n" not in p for p in caught.value.problems)


def test_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("chunk_size: 0\ntiles: -1\npriority: 99\n")
    with pytest.raises(InputFileError) as caught:
        load_job(path)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("job.yaml", b"title: [unclosed\n", "invalid YAML at line"),
        ("job.json", b'{"title": ', "invalid JSON at line 1"),
        ("job.yaml", b"title: \xff\xfe\n", "not UTF-8"),
        ("job.yaml", b"- a\n- b\n", "must hold a mapping of fields, not a list"),
        ("job.yaml", b"", "not empty"),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        load_job(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected.replace("not empty", "empty") in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="file not found"):
        load_job(tmp_path / "nope.yaml")
    with pytest.raises(InputFileError, match="is a folder"):
        load_job(tmp_path)


def test_scene_from_newer_exporter_is_refused(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "scene_export.json").read_text())
    data["exporter_version"] = 99
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFileError, match="exporter_version: was written by a newer exporter"):
        load_scene(path)
