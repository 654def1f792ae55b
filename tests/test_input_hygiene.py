"""Untrusted scenes, hostile files and shared caches, one unit at a time.

The command-line view of the same cases (one line, exit 2, nothing sent) is the bad-input corpus
(tests/bad_inputs/); these tests pin the rules the corpus cannot reach: symlinks, several upload
roots, the staging folder, and the catalogue cache's permissions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import InputFileError, UserError
from prefect_conductor.conductor_cloud.job.catalog import load_catalog, save_catalog
from prefect_conductor.conductor_cloud.job.loaders import load_job, nesting_depth, read_mapping
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.upload_roots import UploadRefused, check_uploadable
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private per-user folder, an API key file in it, and no configured upload roots."""
    folder = tmp_path / "home"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(folder))
    monkeypatch.delenv("PREFECT_CONDUCTOR_UPLOAD_ROOTS", raising=False)
    return folder


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A project folder with one texture; returns (project file, texture)."""
    folder = tmp_path / "proj"
    (folder / "tex").mkdir(parents=True)
    texture = folder / "tex" / "wood.tx"
    texture.write_bytes(b"wood")
    scene_file = folder / "shot.project"
    scene_file.write_bytes(b"scene")
    return scene_file, texture


def test_files_in_the_project_folder_and_staging_are_uploadable(home: Path, tmp_path: Path) -> None:
    scene_file, texture = project(tmp_path)
    staged = home / "staging" / "abc" / "shot.project"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"scene")
    check_uploadable([texture, staged], str(scene_file))


def test_a_symlink_to_the_key_file_is_refused_even_inside_the_project(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "secure" / "key.json"
    key.parent.mkdir()
    key.write_text("{}")
    monkeypatch.setenv("CONDUCTOR_API_KEY_PATH", str(key))
    monkeypatch.setenv("PREFECT_CONDUCTOR_UPLOAD_ROOTS", str(tmp_path))  # roots do not matter
    scene_file, _ = project(tmp_path)
    link = scene_file.parent / "tex" / "innocent.tx"
    link.symlink_to(key)
    with pytest.raises(UploadRefused) as refused:
        check_uploadable([link], str(scene_file))
    assert str(refused.value) == (
        f"uploads: {link}: is the Conductor API key file (CONDUCTOR_API_KEY_PATH) and is never"
        " uploaded"
    )


@pytest.mark.parametrize("name", ["tokens/abc.json", "md5.sqlite", "catalog.json"])
def test_the_per_user_folder_is_never_uploadable(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_UPLOAD_ROOTS", "/")
    secret = home / name
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("secret")
    scene_file, _ = project(tmp_path)
    with pytest.raises(UploadRefused, match="PREFECT_CONDUCTOR_HOME"):
        check_uploadable([secret], str(scene_file))


def test_upload_roots_are_a_path_list(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene_file, _ = project(tmp_path)
    library, plates, other = (tmp_path / n for n in ("library", "plates", "other"))
    for folder in (library, plates, other):
        folder.mkdir()
        (folder / "a.exr").write_bytes(b"x")
    monkeypatch.setenv(
        "PREFECT_CONDUCTOR_UPLOAD_ROOTS", os.pathsep.join([str(library), str(plates)])
    )
    check_uploadable([library / "a.exr", plates / "a.exr"], str(scene_file))
    with pytest.raises(UploadRefused) as refused:
        check_uploadable([other / "a.exr"], str(scene_file))
    message = str(refused.value)
    assert str(other / "a.exr") in message and "PREFECT_CONDUCTOR_UPLOAD_ROOTS" in message
    assert "\n" not in message


def test_a_symlink_out_of_the_project_is_judged_by_its_target(home: Path, tmp_path: Path) -> None:
    scene_file, _ = project(tmp_path)
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    link = scene_file.parent / "tex" / "link.tx"
    link.symlink_to(outside)
    with pytest.raises(UploadRefused, match="outside the folders a scene may upload from"):
        check_uploadable([link], str(scene_file))


def test_the_catalogue_cache_is_refused_when_others_can_write_it(home: Path) -> None:
    path = save_catalog(fixture_catalog())
    assert load_catalog().source_url == "sandbox"
    path.chmod(0o666)
    with pytest.raises(InputFileError, match="can be written by other users"):
        load_catalog()
    path.chmod(0o600)
    home.chmod(0o777)
    try:
        with pytest.raises(InputFileError, match=f"{home} can be written by other users"):
            load_catalog()
    finally:
        home.chmod(0o700)
    assert load_catalog().source_url == "sandbox"


def test_a_catalogue_named_on_the_command_line_is_read_as_given(tmp_path: Path) -> None:
    path = save_catalog(fixture_catalog(), tmp_path / "shared" / "catalog.json")
    path.chmod(0o664)
    assert load_catalog(path).source_url == "sandbox"


def test_home_that_is_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "home"
    file.write_text("")
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(file))
    with pytest.raises(UserError) as caught:
        get_settings()
    assert str(caught.value) == f"PREFECT_CONDUCTOR_HOME: {file} is a file, not a folder"


def test_yaml_merge_keys_may_be_overridden_but_nested_duplicates_may_not(tmp_path: Path) -> None:
    merged = tmp_path / "merged.yaml"
    merged.write_text("base: &b {a: 1, b: 2}\nthing:\n  <<: *b\n  a: 3\n")
    assert read_mapping(merged)["thing"] == {"a": 3, "b": 2}
    nested = tmp_path / "nested.yaml"
    nested.write_text("metadata:\n  shot: '010'\n  shot: '020'\n")
    with pytest.raises(InputFileError, match="key 'shot' is given twice \\(line 3\\)"):
        read_mapping(nested)


def test_nesting_depth_is_measured_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(50_000):
        deep = [deep]
    assert nesting_depth({"a": deep}) == 50_002
    assert nesting_depth({"a": 1, "b": {"c": [1, 2]}}) == 3


def test_numbers_stay_strict_but_tabs_and_plain_values_pass(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text('{"chunk_size": 3, "environment": [{"name": "P", "value": "a\\tb"}]}')
    assert load_job(job).chunk_size == 3
    for field in ("tiles", "retries", "priority", "max_instances", "approval_timeout_minutes"):
        with pytest.raises(ValueError, match="must be a whole number, not yes/no"):
            ConductorJob.model_validate({field: True})


def test_metadata_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    labels = {f"k{n}": "v" for n in range(10)}
    assert len(ConductorJob(metadata=labels).metadata) == 10
    monkeypatch.setenv("PREFECT_CONDUCTOR_MAX_METADATA_KEYS", "9")
    with pytest.raises(ValueError, match="10 keys, more than 9"):
        ConductorJob(metadata=labels)


def test_a_render_package_staged_elsewhere_is_allowed_by_name_only(
    home: Path, tmp_path: Path
) -> None:
    scene_file, _ = project(tmp_path)
    staged = tmp_path / "custom-staging" / "abc" / "shot.project"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"scene")
    beside = staged.parent / "other.txt"
    beside.write_text("x")
    check_uploadable([staged], str(scene_file), extra_roots=[staged])
    with pytest.raises(UploadRefused, match="outside the folders"):
        check_uploadable([staged, beside], str(scene_file), extra_roots=[staged])


def test_an_impossible_yaml_date_is_not_called_a_long_number(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("title: 2020-13-45\n")
    with pytest.raises(InputFileError) as caught:
        read_mapping(path)
    assert caught.value.problems == [f"{path}: a value cannot be read (month must be in 1..12)"]
