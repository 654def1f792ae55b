"""The quick start of Conductor's Jobs submitter guide, step by step, in the stand-in host.

Each test performs the steps before it through ``quick_start`` and then checks its own step, so a
failure names the step that broke. Refresh talks to the sandbox over HTTP; Submit creates a flow
run on a real Prefect server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.catalog import load_catalog
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.host_export.item import read_job
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.host_scenes import Shot, attribute, build_shot, menu
from tests.host_standin.fixtures import standin_module
from tests.prefect_server import HOST_TESTS_DEPLOYMENT, flow_runs, register_deployment

STEPS = (
    "open",
    "new",
    "title",
    "images",
    "refresh",
    "project",
    "custom_frames",
    "chunk_size",
    "scout",
    "instance_type",
)


def quick_start(app: Any, root: Path, until: str) -> tuple[Shot, Any]:
    """Do the quick start's steps up to and including ``until``; return the shot and the item."""
    shot = build_shot(app, root)
    job: Any = None
    for step in STEPS[: STEPS.index(until) + 1]:
        if step == "open":
            app.load_project(str(shot.project))
            shot.beauty = app.item("project://scene/beauty")
            shot.shadow = app.item("project://scene/shadow")
        elif step == "new":
            job = app.ui_create("ConductorJob", "ConductorJob")
        elif step == "title":
            app.ui_set(job, "title", "shot010 lighting")
        elif step == "images":
            app.ui_add(job, "images", shot.beauty, shot.shadow)
        elif step == "refresh":
            app.ui_press(job, "refresh")
        elif step == "project":
            app.ui_choose(job, "project", "default")
        elif step == "custom_frames":
            app.ui_set(job, "use_custom_frames", True)
            app.ui_set(job, "custom_frames", "1-10")
        elif step == "chunk_size":
            app.ui_set(job, "chunk_size", 2)
        elif step == "scout":
            app.ui_set(job, "use_scout_frames", True)
            app.ui_set(job, "scout_frames", "3,8")
        elif step == "instance_type":
            app.ui_choose(job, "instance_type", "n1-standard-8 (8 cores, 30 GB)")
    return shot, job


def info(job: Any) -> str:
    return str(attribute(job, "frames_info").get_string())


def test_startup_registers_conductor_job_under_create(host: Any) -> None:
    assert host.get_factory().get_classes().exists("ConductorJob")
    assert "prefect-conductor: ConductorJob registered (Create > ConductorJob)" in host.lines()


def test_new_conductor_job_shows_its_attributes_with_hover_docs(host: Any, tmp_path: Path) -> None:
    _, job = quick_start(host, tmp_path, "new")
    assert job.get_full_name() == "project://scene/ConductorJob"
    s_class = host.get_factory().get_classes().get("ConductorJob")
    chunk_doc = ConductorJob.model_fields["chunk_size"].description
    assert s_class.docs["chunk_size"] == chunk_doc
    assert [name for name, _ in s_class.actions] == ["refresh", "preview", "submit"]
    # Before Refresh: the project is "- not set -" and the menu holds nothing else.
    assert menu(job, "project") == ["- not set -"]
    assert attribute(job, "project").get_applied_preset_label() == "- not set -"


def test_set_a_title(host: Any, tmp_path: Path) -> None:
    _, job = quick_start(host, tmp_path, "title")
    assert read_job(job).title == "shot010 lighting"


def test_add_images_only_offers_images_and_layers(host: Any, tmp_path: Path) -> None:
    shot, job = quick_start(host, tmp_path, "images")
    assert read_job(job).images == ["project://scene/beauty", "project://scene/shadow"]
    assert info(job) == "10 Frames -- 2 Chunks -- 1-10"
    texture = host.item("project://scene/wood")
    with pytest.raises(standin_module().HostUsageError, match="not offered"):
        host.ui_add(job, "images", texture)
    assert shot.beauty.get_attribute("render_to_disk").get_bool()


def test_refresh_signs_in_and_fills_the_menus(
    host: Any, tmp_path: Path, conductor_env: SandboxHandle
) -> None:
    _, job = quick_start(host, tmp_path, "refresh")
    assert menu(job, "project") == ["- not set -", "default", "Feature FX", "shot010"]
    machines = menu(job, "instance_type")
    assert machines[1] == "n1-standard-4 (4 cores, 15 GB)"
    assert not any("windows" in label for label in machines)
    assert attribute(job, "host_version").get_string() == "5.0.10"
    assert attribute(job, "host_package").get_applied_preset_label() == "jobs 5.0.10 linux"
    assert load_catalog().source_url == conductor_env.url  # the cache Preview will read
    summary = [line for line in host.lines("info") if "Refresh:" in line]
    assert summary and "fetched from" in summary[0] and "-> jobs 5.0.10 linux" in summary[0]


def test_choose_a_project(host: Any, tmp_path: Path, conductor_env: SandboxHandle) -> None:
    _, job = quick_start(host, tmp_path, "project")
    assert read_job(job).project == "default"


def test_custom_frames_update_frames_info(
    host: Any, tmp_path: Path, conductor_env: SandboxHandle
) -> None:
    _, job = quick_start(host, tmp_path, "custom_frames")
    assert info(job) == "10 Frames -- 2 Chunks -- 1-10"
    host.ui_set(job, "custom_frames", "1-20")
    assert info(job) == "20 Frames -- 4 Chunks -- 1-20"
    host.ui_set(job, "custom_frames", "1-10")


def test_chunk_size_two(host: Any, tmp_path: Path, conductor_env: SandboxHandle) -> None:
    _, job = quick_start(host, tmp_path, "chunk_size")
    assert info(job) == "10 Frames -- 5 Chunks -- 1-10"


def test_scout_frames_show_in_frames_info(
    host: Any, tmp_path: Path, conductor_env: SandboxHandle
) -> None:
    _, job = quick_start(host, tmp_path, "scout")
    assert info(job) == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"


def test_pick_an_instance_type(host: Any, tmp_path: Path, conductor_env: SandboxHandle) -> None:
    _, job = quick_start(host, tmp_path, "instance_type")
    assert read_job(job).instance_type == "n1-standard-8"


def test_the_host_package_is_detected(
    host: Any, tmp_path: Path, conductor_env: SandboxHandle
) -> None:
    _, job = quick_start(host, tmp_path, "instance_type")
    job_model = read_job(job)
    assert job_model.host_package == "jobs 5.0.10 linux"
    assert job_model.host_version == "5.0.10"


def test_preview_shows_the_plan_and_payload_and_sends_nothing(
    host: Any, tmp_path: Path, conductor_env: SandboxHandle
) -> None:
    _, job = quick_start(host, tmp_path, "instance_type")
    host.ui_press(job, "preview")
    assert not host.lines("error"), host.lines("error")
    window = host.windows[-1]
    assert window.get_title() == "Conductor Submission Preview"
    text = window.text()
    assert "nothing has been sent" in text
    assert "Frames: 2 Scout / 10 Frames -- 5 Chunks -- 1-10" in text
    # The readable preview (the same text as `prefect-conductor preview`): each job in short,
    # then one upload table with frame sequences collapsed.
    scout = text.split("Job 'scout': POST jobs/\n")[1].split("\nJob 'full'")[0]
    assert [line.strip() for line in scout.splitlines() if line.strip().startswith("frames ")] == [
        "frames 3-4:",
        "frames 7-8:",
    ]
    assert "job_title: shot010 lighting [<submission tag>]\n" in scout
    assert "instance_type: n1-standard-8\n" in scout
    uploads = text.split("\nUploads: ")[1]
    assert "sim.1-12#.abc" in uploads  # every file the pattern matches (motion blur reads 11)
    assert "wood.1001" in uploads
    assert conductor_env.jobs() == []
    assert conductor_env.uploads() == {}


@pytest.mark.e2e
def test_submit_starts_a_flow_run_and_returns_at_once(
    host: Any,
    tmp_path: Path,
    conductor_env: SandboxHandle,
    prefect_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deployment = register_deployment(prefect_server)
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    monkeypatch.setenv("PREFECT_CONDUCTOR_DEPLOYMENT", f"render-submit/{HOST_TESTS_DEPLOYMENT}")
    shot, job = quick_start(host, tmp_path, "instance_type")
    started = time.perf_counter()
    host.ui_press(job, "submit")
    elapsed = time.perf_counter() - started
    assert not host.lines("error"), host.lines("error")
    runs = [
        r
        for r in flow_runs(prefect_server, deployment)
        if r["parameters"]["scene"] == {"project_path": str(shot.project)}
    ]
    assert len(runs) == 1
    run = runs[0]
    expected_job = read_job(job).model_dump(mode="json")
    assert run["parameters"]["job"] == expected_job
    assert set(run["parameters"]["options"]) == {"submission_key", "submitted_by"}
    assert run["parameters"]["options"]["submission_key"] == run["idempotency_key"]
    assert run["state"]["type"] == "SCHEDULED"
    link = f"{prefect_server.removesuffix('/api')}/runs/flow-run/{run['id']}"
    assert any(link in line for line in host.lines("info"))
    assert host.messages[-1].title == "Conductor Submission" and link in host.messages[-1].text
    print(f"Submit returned in {elapsed * 1000:.0f} ms")

    def runs_of_this_shot() -> list[dict[str, Any]]:
        return [
            r
            for r in flow_runs(prefect_server, deployment)
            if r["parameters"]["scene"] == {"project_path": str(shot.project)}
        ]

    # A double-click: the second Submit saves the same scene, so it finds the same flow run.
    host.ui_press(job, "submit")
    assert [r["id"] for r in runs_of_this_shot()] == [run["id"]]
    assert host.messages[-1].text.startswith("This job was already submitted")
    # A changed job is a new submission.
    host.ui_set(job, "chunk_size", 5)
    host.ui_press(job, "submit")
    assert len(runs_of_this_shot()) == 2
    assert not host.lines("error"), host.lines("error")
