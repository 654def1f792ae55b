"""The catalogue: API records in, labels and lookups out, cached in a private file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.catalog import (
    Catalog,
    fixture_catalog,
    fixture_records,
    load_catalog,
    save_catalog,
)
from prefect_conductor.conductor_cloud.errors import FieldError, InputFileError


def test_from_api_filters_and_sorts() -> None:
    catalog = fixture_catalog()
    assert "old-show" not in catalog.projects
    assert catalog.projects == sorted(catalog.projects, key=str.casefold)
    kinds = [t.kind for t in catalog.instance_types]
    assert kinds == sorted(kinds)  # cpu first, then gpu
    cpu = [t for t in catalog.instance_types if t.kind == "cpu"]
    assert [t.cores for t in cpu] == sorted(t.cores for t in cpu)


def test_records_are_not_mutated_and_labels_are_ours() -> None:
    records = fixture_records()
    before = [dict(r) for r in records["instance_types"]]
    catalog = Catalog.from_api(
        records["projects"], records["instance_types"], records["packages"], [], source_url="x"
    )
    assert records["instance_types"] == before
    t4 = catalog.find_instance_type("n1-standard-8-t4-1")
    assert t4.label == "8 cores, 30 GB, 1 x Tesla T4 16 GB"
    assert catalog.find_instance_type("n1-highcpu-32").memory == 28.8


def test_lookups_name_the_field() -> None:
    catalog = fixture_catalog()
    with pytest.raises(
        FieldError, match="instance_type: unknown instance type 'n1-standard-9'; did you mean"
    ):
        catalog.find_instance_type("n1-standard-9")
    with pytest.raises(
        FieldError, match="project: unknown project 'defualt'; did you mean 'default'"
    ):
        catalog.require_project("defualt")


def test_extra_environment_both_shapes() -> None:
    records = fixture_records()
    mine = Catalog.from_api(
        [], [], [], records["extra_environment"], "x", account_id="sandbox-account"
    )
    assert [(e.name, e.value) for e in mine.extra_environment] == [("STUDIO_ROOT", "/mnt/studio")]
    other = Catalog.from_api(
        [], [], [], records["extra_environment"], "x", account_id="other-account"
    )
    assert [(e.name, e.value) for e in other.extra_environment] == [("OTHER", "1")]


def test_save_and_load_round_trip_private(tmp_path: Path) -> None:
    path = save_catalog(fixture_catalog(), tmp_path / "cache" / "catalog.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_catalog(path)
    assert loaded == fixture_catalog().model_copy(update={"fetched_at": loaded.fetched_at})
    assert loaded.age.total_seconds() >= 0


def test_malformed_catalogue_files(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.json"
    bad.write_text('{"projects": 3}')
    with pytest.raises(InputFileError) as caught:
        load_catalog(bad)
    assert any("projects" in p for p in caught.value.problems)
    with pytest.raises(InputFileError, match="file not found"):
        load_catalog(tmp_path / "missing.json")


def test_no_cache_yet_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path))
    with pytest.raises(InputFileError, match="run `prefect-conductor refresh`"):
        load_catalog()
