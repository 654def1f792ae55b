"""The ConductorJob item in the stand-in host: its attributes, the project file, errors, startup."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.host_export import conductor_job
from prefect_conductor.host_export.attributes import GROUPS, all_specs, decode_strings
from prefect_conductor.host_export.item import read_job
from tests.host_scenes import (
    OFFLINE_CONDUCTOR,
    attribute,
    build_shot,
    cache_offline_catalog,
    menu,
)
from tests.host_standin.fixtures import REPO, standin_environment

STARTUP = REPO / "prefect_conductor" / "host_export" / "startup.py"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh cached catalogue, so Refresh fills the menus without any network."""
    monkeypatch.setenv("CONDUCTOR_URL", OFFLINE_CONDUCTOR)
    cache_offline_catalog()


# ------------------------------------------------------------------------------ attributes


def test_every_model_field_is_an_attribute_with_its_description_as_hover_doc(host: Any) -> None:
    s_class = host.get_factory().get_classes().get("ConductorJob")
    item = host.ui_create("ConductorJob", "job")
    assert set(GROUPS) == set(ConductorJob.model_fields)
    for name, info in ConductorJob.model_fields.items():
        found = attribute(item, name)
        assert found.get_group_name() == GROUPS[name]
        assert s_class.docs[name].startswith(info.description or "<missing>"), name
    assert "prepend:" in s_class.docs["environment"]
    assert attribute(item, "frames_info").is_read_only()
    assert attribute(item, "last_project").is_hidden()
    assert attribute(item, "images").get_object_filters() == ["Image", "Layer"]
    assert menu(item, "scout_mode") == ["gated", "native", "off"]
    assert set(s_class.docs) >= {spec.name for spec in all_specs()} | {"refresh", "submit"}


def test_a_new_item_reads_as_the_models_defaults(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    assert read_job(item) == ConductorJob()


def test_switches_show_and_hide_their_attributes(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    assert attribute(item, "custom_frames").is_hidden()
    host.ui_set(item, "use_custom_frames", True)
    assert not attribute(item, "custom_frames").is_hidden()
    assert attribute(item, "approval_timeout_minutes").is_hidden()
    host.ui_choose(item, "approval", "manual")
    assert not attribute(item, "approval_timeout_minutes").is_hidden()
    host.ui_set(item, "preemptible", False)
    assert attribute(item, "retries").is_hidden()


def test_text_lists_round_trip_into_the_model(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    host.ui_set(item, "environment", ["OCIO=/studio/aces.ocio", "prepend:PATH=/opt/bin"])
    host.ui_set(item, "metadata", ["shot=010", "department = lighting"])
    host.ui_set(item, "notify", ["lead@example.com", ""])
    job = read_job(item)
    assert [(v.name, v.value, v.merge_policy) for v in job.environment] == [
        ("OCIO", "/studio/aces.ocio", "append"),
        ("PATH", "/opt/bin", "prepend"),
    ]
    assert job.metadata == {"shot": "010", "department": "lighting"}
    assert job.notify == ["lead@example.com"]
    assert decode_strings("environment", ["exclusive:HOME=/a=b"])[0]["value"] == "/a=b"


# ------------------------------------------------------------------------------ the project file


def test_values_are_stored_in_the_project_and_items_are_independent(
    host: Any, tmp_path: Path, offline: None
) -> None:
    shot = build_shot(host, tmp_path)
    first = host.ui_create("ConductorJob", "beauty_job")
    second = host.ui_create("ConductorJob", "shadow_job")
    host.ui_set(first, "title", "beauty pass")
    host.ui_add(first, "images", shot.beauty)
    host.ui_press(first, "refresh")
    host.ui_choose(first, "project", "shot010")
    host.ui_choose(first, "instance_type", "n1-highmem-8 (8 cores, 52 GB)")
    host.ui_set(first, "chunk_size", 3)
    host.ui_set(first, "environment", ["OCIO=/studio/aces.ocio"])
    host.ui_set(second, "title", "shadow pass")
    host.ui_add(second, "images", shot.shadow)
    assert menu(second, "project") == ["- not set -"]  # Refresh filled the first item only
    expected_first, expected_second = read_job(first), read_job(second)
    assert host.save_project(str(shot.project))
    host.load_project(str(shot.project))
    first = host.item("project://scene/beauty_job")
    second = host.item("project://scene/shadow_job")
    assert read_job(first) == expected_first
    assert read_job(second) == expected_second
    assert expected_first.project == "shot010" and expected_second.project == ""
    assert expected_first.instance_type == "n1-highmem-8"


def test_refresh_after_a_reload_keeps_the_earlier_choices(
    host: Any, tmp_path: Path, offline: None
) -> None:
    shot = build_shot(host, tmp_path)
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "refresh")
    host.ui_choose(item, "project", "shot010")
    host.ui_choose(item, "instance_type", "n1-highmem-8 (8 cores, 52 GB)")
    host.save_project(str(shot.project))
    host.load_project(str(shot.project))
    item = host.item("project://scene/job")
    # The host keeps the index but not the entries Refresh added: the menu shows nothing chosen,
    # while the remembered label still says what the artist picked.
    assert attribute(item, "project").get_applied_preset_index() == -1
    assert read_job(item).project == "shot010"
    host.ui_press(item, "refresh")
    assert attribute(item, "project").get_applied_preset_label() == "shot010"
    assert attribute(item, "instance_type").get_applied_preset_label().startswith("n1-highmem-8")


def test_a_choice_conductor_no_longer_offers_is_reported(
    host: Any, tmp_path: Path, offline: None
) -> None:
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "refresh")
    attribute(item, "last_project").set_string("retired-show")
    host.ui_press(item, "refresh")
    assert read_job(item).project == ""
    assert any("project 'retired-show' is no longer offered" in w for w in host.lines("warning"))


# ------------------------------------------------------------------------------ errors


def test_bad_frames_show_in_frames_info_not_as_a_crash(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    host.ui_set(item, "use_custom_frames", True)
    host.ui_set(item, "custom_frames", "1-x")
    info = attribute(item, "frames_info").get_string()
    assert info.startswith("- custom_frames: ") and "1-x" in info
    assert host.lines("error") == []


def test_an_error_in_an_action_is_one_line_and_a_traceback_only_when_asked(
    host: Any, tmp_path: Path, offline: None
) -> None:
    build_shot(host, tmp_path)
    item = host.ui_create("ConductorJob", "job")
    host.ui_set(item, "environment", ["not a variable"])
    host.ui_press(item, "preview")
    assert host.lines("error") == [
        "ConductorJob project://scene/job: Preview: environment[0]: 'not a variable': write"
        " NAME=value, optionally after append:, prepend: or exclusive:"
    ]
    host.ui_set(item, "show_tracebacks", True)
    host.ui_press(item, "preview")
    assert len(host.lines("error")) == 3
    assert host.lines("error")[2].startswith("Traceback (most recent call last):")


def test_an_unexpected_failure_is_caught_too(host: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(obj: Any) -> None:
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setitem(conductor_job.HANDLERS, "refresh", broken)
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "refresh")
    assert host.lines("error") == [
        "ConductorJob project://scene/job: Refresh failed unexpectedly: ZeroDivisionError:"
        " division by zero second line"
    ]


def test_refresh_without_an_api_key_says_which_variable_to_set(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "refresh")
    [line] = host.lines("error")
    assert "no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH" in line


def test_submit_checks_quickly_and_saves_nothing_when_the_job_is_wrong(
    host: Any, tmp_path: Path, offline: None
) -> None:
    shot = build_shot(host, tmp_path)
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "submit")
    before = shot.project.read_bytes()
    assert host.lines("error")[-1].startswith(
        "ConductorJob project://scene/job: Submit: images: no images chosen: add at least one"
        " Image or Layer to render (and "
    )
    host.ui_add(item, "images", shot.beauty)
    host.ui_set(shot.beauty, "render_to_disk", False)
    host.ui_press(item, "refresh")
    host.ui_choose(item, "project", "default")
    host.ui_press(item, "submit")
    assert host.lines("error")[-1].endswith(
        "Submit: images[0]: 'project://scene/beauty' has Render To Disk off"
    )
    assert shot.project.read_bytes() == before
    assert host.messages == []


def test_submit_on_a_never_saved_project_asks_to_save_it(host: Any) -> None:
    item = host.ui_create("ConductorJob", "job")
    host.ui_press(item, "submit")
    assert host.lines("error") == [
        "ConductorJob project://scene/job: Submit: the project has never been saved: save it"
        " once (File > Save As), then try again"
    ]


# ------------------------------------------------------------------------------ startup


def test_startup_registers_once(host: Any) -> None:
    assert conductor_job.register()
    assert host.lines("error") == []
    assert (
        host.lines().count("prefect-conductor: ConductorJob registered (Create > ConductorJob)")
        == 1
    )


def run_startup(script: Path, **env: str) -> dict[str, Any]:
    """Run a startup script as the host runs one, in a fresh stand-in host, no site-packages."""
    runner = (
        "import json, runpy, ix\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
        "print(json.dumps({'log': ix.application.log,"
        " 'registered': ix.application.get_factory().get_classes().exists('ConductorJob'),"
        " 'crashes': len(ix.application.crashes)}))\n"
    )
    child_env = standin_environment(**env)
    child_env["PYTHONPATH"] = str(Path(__file__).parent / "host_standin")
    finished = subprocess.run(
        [sys.executable, "-S", "-c", runner],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    result: dict[str, Any] = json.loads(finished.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.usefixtures("cli_subprocess")
def test_startup_without_the_package_location_logs_what_to_set(tmp_path: Path) -> None:
    copied = tmp_path / "startup.py"
    shutil.copy(STARTUP, copied)
    result = run_startup(copied)
    assert not result["registered"]
    [(level, line)] = result["log"]
    assert level == "error"
    assert line.startswith("prefect-conductor: ConductorJob is not available: cannot import")
    assert "Set PREFECT_CONDUCTOR_LOCATION" in line and "(now: not set)" in line


@pytest.mark.usefixtures("cli_subprocess")
def test_startup_with_dependencies_missing_names_the_missing_module() -> None:
    result = run_startup(STARTUP, PREFECT_CONDUCTOR_LOCATION=str(REPO))
    assert not result["registered"] and result["crashes"] == 0
    [(level, line)] = result["log"]
    # Nothing third-party is importable with -S: the first dependency the plugin imports is named.
    missing = line.split("cannot import '")[1].split("'")[0]
    assert level == "error" and missing in {"pydantic", "annotated_types", "httpx", "yaml"}
    assert f"(now: {REPO})" in line
