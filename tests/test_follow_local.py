"""A local run (no deployment) that follows its job: it polls in its own process, downloads and
checks the frames, and a failed task ends it Failed in one line naming the job and frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.job_outputs import TasksFailed
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.node.package import write_package
from tests.scenes import EXAMPLES, make_job, make_scene

pytestmark = pytest.mark.usefixtures("prefect_backend")

FOLLOW = RunOptions(poll_seconds=0.05, follow=True)


def scene_on_disk(root: Path, sandbox: SandboxHandle) -> SceneSource:
    """A scene export under ``root``; the stand-in renderer writes its images' Save As."""
    scene_file = root / "shot" / "scene_export.json"
    scene_file.parent.mkdir(parents=True)
    scene = make_scene(scene_file.parent)
    scene_file.write_text(scene.model_dump_json())
    write_package(Path(scene.render_package), scene)  # the scene's own Save As, as exported
    sandbox.config(task_seconds=0.05)
    return SceneSource(export_path=str(scene_file))


def test_a_local_run_follows_the_job_to_its_frames(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)
    result: dict[str, Any] = render_submit(job=make_job(), scene=scene, options=FOLLOW)
    outputs = result["outputs"]
    assert outputs["jid"] == result["jobs"]["full"]["jid"]
    assert outputs["files"] == 20  # frames 1-10 of each of two images: scouts' and the rest
    assert Path(outputs["output_folder"]).is_dir()
    assert len(conductor_env.jobs()) == 2


def test_the_sample_scene_never_downloads_into_the_checkout(
    conductor_env: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scene inside the installation (here a stand-in installation holding a renderable copy
    of the sample) is followed into the per-user downloads folder, never into the installation."""
    from prefect_conductor.cli.demo import sample_copy
    from prefect_conductor.tasks import download

    installation = tmp_path / "installation"
    sample = sample_copy(EXAMPLES, installation / "examples" / "shot010")
    monkeypatch.setattr(download, "INSTALLATION", installation)
    conductor_env.config(task_seconds=0.05)
    before = sorted(installation.rglob("*"))
    result: dict[str, Any] = render_submit(
        job=load_job(sample / "job.yaml"),
        scene=SceneSource(export_path=str(sample / "scene_export.json")),
        options=FOLLOW,
    )
    outputs = result["outputs"]
    assert outputs["files"] == 20
    assert Path(outputs["output_folder"]) == get_settings().home / "downloads" / outputs["jid"]
    assert sorted(installation.rglob("*")) == before


def test_a_local_run_does_not_follow_unless_asked(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)
    options = RunOptions(poll_seconds=0.05)
    result: dict[str, Any] = render_submit(job=make_job(), scene=scene, options=options)
    assert "outputs" not in result


def test_without_re_renders_a_failed_task_of_the_full_job_fails_the_run_naming_it(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)
    conductor_env.config(fail_frames=[5])
    job = make_job(rerender_attempts=0)
    with pytest.raises(TasksFailed, match=r"tasks did not render: .* failed \(frames 5-6\)"):
        render_submit(job=job, scene=scene, options=FOLLOW)
    assert len(conductor_env.jobs()) == 2


def test_each_task_of_the_followed_job_is_announced_as_its_files_land(
    conductor_env: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``conductor.task.downloaded`` once per task of the full job, about the job, with the
    task, its frames, its files (on disk by then) and their bytes; the job's task clock and the
    run's record of downloaded tasks are kept in result storage."""
    from prefect_conductor.tasks import download
    from prefect_conductor.tasks.job_events import TASK_DOWNLOADED, job_resource
    from prefect_conductor.tasks.task_clocks import ClockRecords

    sent: list[tuple[str, str, str, dict[str, Any]]] = []
    on_disk_when_sent: list[bool] = []

    def recorded(name: str, jid: str, title: str, payload: dict[str, Any]) -> None:
        sent.append((name, jid, title, payload))
        folder = Path(payload["folder"])
        on_disk_when_sent.append(all((folder / f).is_file() for f in payload["files"]))
        emit_job_event(name, jid, title, payload)

    emit_job_event = download.emit_job_event
    monkeypatch.setattr(download, "emit_job_event", recorded)
    scene = scene_on_disk(tmp_path, conductor_env)
    result: dict[str, Any] = render_submit(job=make_job(), scene=scene, options=FOLLOW)
    jid = result["jobs"]["full"]["jid"]
    assert {(name, job) for name, job, _, _ in sent} == {(TASK_DOWNLOADED, jid)}
    assert job_resource(jid, sent[0][2])["prefect.resource.id"] == f"conductor.job.{jid}"
    payloads = sorted((p for *_, p in sent), key=lambda p: p["tid"])
    assert [(p["tid"], p["frames"]) for p in payloads] == [
        ("000", "1-2"),
        ("001", "5-6"),
        ("002", "9-10"),
    ]
    assert all(on_disk_when_sent)
    for payload in payloads:
        assert sorted(payload) == ["bytes", "files", "folder", "frames", "tid"]
        assert len(payload["files"]) == 4  # two frames of each of two images
        folder = Path(payload["folder"])
        assert payload["bytes"] == sum((folder / f).stat().st_size for f in payload["files"])
    assert Path(payloads[0]["folder"]) == Path(result["outputs"]["output_folder"])
    assert sorted(ClockRecords().read(jid).durations()) == ["000", "001", "002"]
