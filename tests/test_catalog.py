"""The catalogue: API records in, labels and lookups out, cached in a private file."""

from __future__ import annotations

import copy
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.errors import FieldError, InputFileError
from prefect_conductor.conductor_cloud.job.catalog import (
    Catalog,
    InstanceType,
    account_environment,
    default_catalog_path,
    load_catalog,
    save_catalog,
)
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog, fixture_records
from prefect_conductor.sandbox.handle import SandboxHandle

EXAMPLE_CATALOG = Path(__file__).resolve().parent.parent / "examples" / "catalog.json"


def instance(name: str, cores: int, memory: Any, **fields: Any) -> dict[str, Any]:
    return {"name": name, "cores": cores, "memory": memory, "operating_system": "linux", **fields}


def test_from_api_filters_and_sorts() -> None:
    catalog = fixture_catalog()
    assert catalog.source_url == "sandbox" and catalog.skipped == []
    assert catalog.projects == ["default", "Feature FX", "shot010"]
    assert catalog.inactive_projects == ["old-show"]
    assert [t.name for t in catalog.instance_types] == [
        "n1-standard-4",
        "n1-standard-8",
        "n1-standard-8-w",
        "n1-highmem-8",
        "n1-standard-16",
        "n1-highcpu-32",
        "n1-standard-8-t4-1",
        "a2-highgpu-2g",
    ]
    # ciocore drops uncategorised types once any type has categories; nothing is dropped here.
    assert catalog.find_instance_type("n1-highcpu-32").categories == []
    assert [c.label for c in catalog.find_instance_type("a2-highgpu-2g").categories] == ["GPU"]


def test_memory_strings_sort_as_numbers() -> None:
    records = [
        instance("e", 4, "120"),
        instance("b", 4, "7.2"),
        instance("c", 4, 15),
        instance("d", 4, "60 GB"),
        instance("a", 2, "200"),
        instance("g", 2, "8", gpu={"gpu_count": 1, "gpu_model": "T4", "gpu_memory": "16"}),
    ]
    catalog = Catalog.from_api([], records, [], [], source_url="x")
    assert sorted(["120", "7.2", "15", "60"]) == ["120", "15", "60", "7.2"]  # ciocore's order
    assert [(t.name, t.memory_gb) for t in catalog.instance_types] == [
        ("a", 200.0),
        ("b", 7.2),
        ("c", 15.0),
        ("d", 60.0),
        ("e", 120.0),
        ("g", 8.0),  # GPU types after every CPU type
    ]


def test_labels_are_ours_and_records_untouched() -> None:
    records = fixture_records()
    before = copy.deepcopy(records)
    catalog = Catalog.from_api(
        records["projects"],
        records["instance_types"],
        records["packages"],
        records["extra_environment"],
        source_url="x",
    )
    assert records == before
    labels = {t.name: t.label for t in catalog.instance_types}
    assert labels["n1-standard-8-t4-1"] == "8 cores, 30 GB, 1 x Tesla T4 16 GB"
    assert labels["a2-highgpu-2g"] == "24 cores, 170 GB, 2 x A100 40 GB"
    assert labels["n1-highcpu-32"] == "32 cores, 28.8 GB"
    assert labels["n1-standard-8-w"] == "8 cores, 30 GB (windows)"
    t4 = catalog.find_instance_type("n1-standard-8-t4-1")
    assert t4.description == "8 core, 30GB Mem, 1 T4"  # the server's text, as it came
    assert (t4.kind, t4.gpu and t4.gpu.total_gpu_memory_gb) == ("gpu", 16.0)
    one = InstanceType.model_validate(instance("tiny", 1, "0.6", gpu={"gpu_count": 0}))
    assert (one.label, one.kind) == ("1 core, 0.6 GB", "cpu")


def test_unusable_records_are_skipped_and_said() -> None:
    projects: list[Any] = [{"name": "a", "status": "active"}, {"id": "p"}, "bare-name"]
    catalog = Catalog.from_api(
        projects,
        [
            instance("ok", 4, "15"),
            instance("mac", 4, "15", operating_system="macos"),
            instance("lots", 4, "lots"),
            {"name": "nocores", "memory": 1},
        ],
        [{"package_id": "x", "product": "jobs", "platform": "solaris"}],
        [],
        source_url="x",
    )
    assert catalog.projects == ["a", "bare-name"]
    assert [t.name for t in catalog.instance_types] == ["ok"]
    assert catalog.skipped == [
        "projects[1]: no name",
        "instance_types[1] (mac): operating_system: Input should be 'linux' or 'windows'",
        "instance_types[2] (lots): memory: 'lots' is not a number of GB",
        "instance_types[3] (nocores): cores: Field required",
        "packages[0] (jobs): unknown platform 'solaris'",
    ]


def test_lookups_name_the_field() -> None:
    catalog = fixture_catalog()
    assert catalog.require_project("Feature FX") == "Feature FX"
    cases = [
        (
            lambda: catalog.find_instance_type("n1-standard-9"),
            "instance_type: unknown instance type 'n1-standard-9'; did you mean 'n1-standard-8',",
        ),
        (
            lambda: catalog.require_project("defualt"),
            "project: unknown project 'defualt'; did you mean 'default'?",
        ),
        (
            lambda: catalog.require_project("feature fx"),
            "project: unknown project 'feature fx'; did you mean 'Feature FX'?",
        ),
        (
            lambda: catalog.require_project("old-show"),
            "project: unknown project 'old-show': it is inactive on Conductor; pick another",
        ),
        (lambda: catalog.require_project("zzz"), "project: unknown project 'zzz'"),
    ]
    for call, message in cases:
        with pytest.raises(FieldError) as caught:
            call()
        assert str(caught.value).startswith(message), str(caught.value)


def test_extra_environment_both_shapes() -> None:
    records = fixture_records()["extra_environment"]
    mine = Catalog.from_api([], [], [], records, "x", account_id="sandbox-account")
    assert [(e.name, e.value, e.merge_policy) for e in mine.extra_environment] == [
        ("STUDIO_ROOT", "/mnt/studio", "exclusive"),
        ("PATH", "/mnt/studio/bin", "append"),
    ]
    other = Catalog.from_api([], [], [], records, "x", account_id="other-account")
    assert [(e.name, e.value, e.merge_policy) for e in other.extra_environment] == [
        ("OTHER", "1", "exclusive"),
        ("OTHER_ROOT", "/srv/other", "exclusive"),
    ]
    assert Catalog.from_api([], [], [], records, "x", account_id="nobody").extra_environment == []
    guessed = Catalog.from_api([], [], [], records, "x")
    assert [e.name for e in guessed.extra_environment] == ["STUDIO_ROOT", "PATH"]
    assert guessed.skipped == [
        "extra_environment: 2 accounts and no account id; used the first (sandbox-account)"
    ]


def test_extra_environment_bare_lists_and_bad_items() -> None:
    notes: list[str] = []
    entries = account_environment(
        ["A=1", {"name": "B", "value": 2, "merge_policy": "prepend"}, "junk", 7, {"value": "x"}],
        None,
        notes,
    )
    assert [(e.name, e.value, e.merge_policy) for e in entries] == [
        ("A", "1", "exclusive"),
        ("B", "2", "prepend"),
    ]
    assert notes == [
        "extra_environment[2]: not NAME=value nor {name, value}",
        "extra_environment[3]: not NAME=value nor {name, value}",
        "extra_environment[4]: not NAME=value nor {name, value}",
    ]
    single = account_environment({"account_id": "a", "env": ["C=3"]}, "a")
    assert [(e.name, e.value) for e in single] == [("C", "3")]


def test_save_and_load_round_trip_private(tmp_path: Path) -> None:
    catalog = fixture_catalog()
    target = tmp_path / "cache" / "catalog.json"
    target.parent.mkdir()
    target.write_text("old")
    os.chmod(target, 0o644)
    path = save_catalog(catalog, target)
    assert path == target and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(target.parent) == ["catalog.json"]  # no temporary file left behind
    loaded = load_catalog(path)
    assert loaded == catalog
    assert loaded.package_catalog().find("jobs 5.0.10 linux").plugins
    assert 0 <= loaded.age.total_seconds() < 60


def test_default_path_is_per_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path / "home"))
    assert default_catalog_path() == tmp_path / "home" / "catalog.json"
    with pytest.raises(InputFileError, match="no catalogue yet; run `prefect-conductor refresh`"):
        load_catalog()
    written = save_catalog(fixture_catalog())
    assert written == default_catalog_path()
    assert stat.S_IMODE(written.parent.stat().st_mode) == 0o700
    assert load_catalog().source_url == "sandbox"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"projects": 3}', "projects: Input should be a valid list"),
        ('{"projects": 3}', "fetched_at: Field required"),
        (
            "{not json",
            "invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes",
        ),
        ("[1, 2]", "must hold a mapping of fields, not a list"),
        (None, "file not found"),
    ],
)
def test_malformed_catalogue_files(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "catalog.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputFileError) as caught:
        load_catalog(path)
    assert f"{path}: {problem}" in caught.value.problems
    assert "\n" not in str(caught.value)


def test_unknown_keys_and_bad_values_in_a_cached_file(tmp_path: Path) -> None:
    data = json.loads(fixture_catalog().model_dump_json())
    data["colour"] = "blue"
    data["instance_types"][1]["memory_gb"] = "plenty"
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFileError) as caught:
        load_catalog(path)
    assert caught.value.problems == [
        f"{path}: instance_types[1].memory_gb: 'plenty' is not a number of GB",
        f"{path}: colour: unknown field (check the spelling)",
    ]


def test_older_files_still_load() -> None:
    """A catalogue saved before memory_gb existed (the example) reads the API's key names."""
    catalog = load_catalog(EXAMPLE_CATALOG)
    t4 = catalog.find_instance_type("n1-standard-8-t4-1")
    assert t4.memory_gb == 30.0 and t4.gpu is not None and t4.gpu.gpu_memory_gb == 16.0
    naive = json.loads(EXAMPLE_CATALOG.read_text())
    naive["fetched_at"] = "2026-01-01T00:00:00"
    assert Catalog.model_validate(naive).fetched_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_catalogue_fetched_from_the_sandbox_equals_the_fixture(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with ConductorClient(
        sandbox.url, ApiKey.from_text(sandbox.api_key), token_cache_dir=tmp_path / "tokens"
    ) as client:
        fetched = Catalog.from_api(
            client.projects(),
            client.instance_types(),
            client.packages(),
            client.extra_environment(),
            source_url=client.url,
            account_id="sandbox-account",
        )
    expected = fixture_catalog().model_copy(
        update={"fetched_at": fetched.fetched_at, "source_url": fetched.source_url}
    )
    assert fetched == expected
