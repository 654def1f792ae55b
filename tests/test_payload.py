"""The POST jobs/ body: key for key as Conductor's client sends it, and the scout split."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from prefect_conductor.conductor_cloud.api.post_record import submission_tag
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.job.render_wrapper.host_config import CONFIG_NAME
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.submission.payload import (
    PREVIEW_FLOW_RUN,
    PREVIEW_SUBMISSION_KEY,
    PREVIEW_SUBMISSION_TAG,
)
from prefect_conductor.conductor_cloud.submission.prepare import (
    Preview,
    build_preview,
    payloads,
    prepare,
    upload_entries,
)
from prefect_conductor.conductor_cloud.transfers.uploads import Md5Cache
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from tests.scenes import make_job, make_scene
from tests.test_reference_payload import CIOCORE_KEYS

# Every key ciocore's Submit sends, and no other (the reference list lives in one test module).
PAYLOAD_KEYS = set(CIOCORE_KEYS)


def preview_of(job: ConductorJob, scene: SceneExport, tmp_path: Path) -> Preview:
    return build_preview(job, scene, fixture_catalog(), cache=Md5Cache(tmp_path / "md5.sqlite"))


def test_gated_scouting_makes_two_jobs_without_overlap(tmp_path: Path) -> None:
    result = preview_of(make_job(), make_scene(tmp_path / "s"), tmp_path)
    assert list(result.bodies) == ["scout", "full"]
    scout, full = result.bodies["scout"], result.bodies["full"]
    assert set(scout) == PAYLOAD_KEYS and set(full) == PAYLOAD_KEYS
    assert [t["frames"] for t in scout["tasks_data"]] == ["3-4", "7-8"]
    assert [t["frames"] for t in full["tasks_data"]] == ["1-2", "5-6", "9-10"]
    assert scout["job_title"] == f"shot010 lighting [{PREVIEW_SUBMISSION_TAG}]"
    assert (
        full["job_title"].startswith("shot010 lighting") and full["job_title"] != scout["job_title"]
    )
    assert scout["scout_frames"] == "" and full["scout_frames"] == ""
    assert result.prepared.plan.info == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"


def test_payload_shapes(tmp_path: Path) -> None:
    job = make_job(preemptible=True, retries=3, metadata={"shot": "010"}, priority=7)
    body = preview_of(job, make_scene(tmp_path / "s"), tmp_path).bodies["scout"]
    assert body["notify"] == {"emails": ["lead@example.com"]}
    assert body["autoretry_policy"] == {"preempted": {"max_retries": 3}}
    assert body["metadata"] == {
        "project": "default",
        "shot": "010",  # the job's own label wins over the title's
        "department": "lighting",
        "prefect_flow_run": PREVIEW_FLOW_RUN,
        SUBMISSION_METADATA_KEY: f"{PREVIEW_SUBMISSION_KEY}:scout",
    }
    assert body["priority"] == 7 and body["chunk_size"] == 2 and body["local_upload"] is True
    assert body["output_path"] == str(tmp_path / "s" / "renders")
    assert body["software_package_ids"] and all(
        isinstance(i, str) for i in body["software_package_ids"]
    )
    assert all(set(t) == {"command", "frames"} for t in body["tasks_data"])
    assert isinstance(body["environment"], dict)


def test_no_autoretry_when_not_preemptible(tmp_path: Path) -> None:
    body = preview_of(make_job(preemptible=False), make_scene(tmp_path / "s"), tmp_path).bodies
    assert body["scout"]["autoretry_policy"] == {}
    assert body["scout"]["preemptible"] is False


def test_upload_files_carry_base64_md5_and_stat(tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "s")
    body = preview_of(make_job(), scene, tmp_path).bodies["full"]
    entries = {Path(e["destination"]).name: e for e in body["upload_files"]}
    assert set(entries) == {"shot.cio.project", "wood.1001.tx", WRAPPER_PATH.name, CONFIG_NAME}
    expected = base64.b64encode(hashlib.md5(b"wood").digest()).decode()
    assert entries["wood.1001.tx"]["md5"] == expected
    assert entries["wood.1001.tx"]["st_size"] == 4
    assert body["upload_size"] == sum(e["st_size"] for e in body["upload_files"])


def test_native_scouting_is_one_job_with_scout_frames(tmp_path: Path) -> None:
    result = preview_of(make_job(scout_mode="native"), make_scene(tmp_path / "s"), tmp_path)
    assert list(result.bodies) == ["full"]
    assert result.bodies["full"]["scout_frames"] == "3,8"
    assert len(result.bodies["full"]["tasks_data"]) == 5


def test_no_scouting_is_one_job_with_every_task(tmp_path: Path) -> None:
    for job in (make_job(use_scout_frames=False), make_job(scout_mode="off")):
        result = preview_of(job, make_scene(tmp_path / "s"), tmp_path)
        assert list(result.bodies) == ["full"]
        assert len(result.bodies["full"]["tasks_data"]) == 5
        assert result.prepared.plan.info == "10 Frames -- 5 Chunks -- 1-10"


def test_frames_are_canonical_not_the_users_text(tmp_path: Path) -> None:
    job = make_job(custom_frames="9, 1-3,  2, 5-9x2", chunk_size=100, use_scout_frames=False)
    body = preview_of(job, make_scene(tmp_path / "s"), tmp_path).bodies["full"]
    assert body["tasks_data"][0]["frames"] == "1-3,5-9x2"


def test_hostile_image_names_cannot_change_the_command(tmp_path: Path) -> None:
    import shlex

    name = "project://scene/x'; rm -rf / #$(touch pwned)`id`"
    scene = make_scene(tmp_path / "s")
    images = [scene.images[0].model_copy(update={"path": name})]
    scene = scene.model_copy(update={"images": images})
    job = make_job(images=[name], use_scout_frames=False)
    body = preview_of(job, scene, tmp_path).bodies["full"]
    for task in body["tasks_data"]:
        assert name in shlex.split(task["command"])


def test_payloads_match_prepare_and_entries(tmp_path: Path) -> None:
    scene = make_scene(tmp_path / "s")
    prepared = prepare(make_job(), scene, fixture_catalog())
    md5s = {path: "AAAAAAAAAAAAAAAAAAAAAA==" for path in prepared.files}
    bodies = payloads(prepared, upload_entries(md5s), owner="artist", metadata={"k": "v"})
    assert bodies["scout"]["owner"] == "artist"
    assert bodies["full"]["metadata"]["k"] == "v"


def test_preview_and_submit_agree_byte_for_byte_but_the_placeholders(tmp_path: Path) -> None:
    """What ``preview`` prints is what the flow posts, the submission id and run id aside."""
    import json

    scene = make_scene(tmp_path / "s")
    preview = preview_of(make_job(), scene, tmp_path)
    prepared = prepare(make_job(), scene, fixture_catalog())
    submitted = payloads(
        prepared, list(preview.uploads), submission_key="key-7", flow_run_id="run-42"
    )
    shown = json.dumps(dict(preview.bodies))
    assert PREVIEW_SUBMISSION_KEY in shown and PREVIEW_FLOW_RUN in shown
    filled = shown.replace(PREVIEW_SUBMISSION_KEY, "key-7").replace(PREVIEW_FLOW_RUN, "run-42")
    for step in ("scout", "full"):
        tag = json.dumps(submission_tag(f"key-7:{step}"))[1:-1]
        filled = filled.replace(PREVIEW_SUBMISSION_TAG, tag, 1)
    assert filled == json.dumps(submitted)
    assert (
        submitted["scout"]["job_title"]
        == "shot010 lighting [" + submission_tag("key-7:scout") + "]"
    )
    assert submitted["scout"]["metadata"][SUBMISSION_METADATA_KEY] == "key-7:scout"
    assert submitted["full"]["metadata"][SUBMISSION_METADATA_KEY] == "key-7:full"
    assert submitted["full"]["metadata"]["prefect_flow_run"] == "run-42"


def test_windows_paths_lose_the_drive_in_the_command_and_keep_it_in_output_path(
    tmp_path: Path,
) -> None:
    import dataclasses
    import shlex

    scene = make_scene(tmp_path / "s")
    prepared = prepare(make_job(use_scout_frames=False), scene, fixture_catalog())
    images = [
        image.model_copy(update={"save_as": f"C:\\proj\\renders\\{i}\\img.####.exr"})
        for i, image in enumerate(scene.images)
    ]
    windows = scene.model_copy(
        update={
            "render_package": "C:\\proj\\shot 010.cio.project",
            "images": images,
            "config_file": "c:/Users/me/jobs.cfg",
        }
    )
    prepared = dataclasses.replace(prepared, scene=windows)
    md5s = {path: "AAAAAAAAAAAAAAAAAAAAAA==" for path in prepared.files}
    body = payloads(prepared, upload_entries(md5s))["full"]
    words = shlex.split(body["tasks_data"][0]["command"])
    assert words[words.index("--") + 2] == "/proj/shot 010.cio.project"
    assert words[words.index("-config_file") + 1] == "/Users/me/jobs.cfg"
    mkdir = words[words.index("--mkdir") + 1 : words.index("--")]
    assert all(folder.startswith("/proj/renders/") for folder in mkdir) and mkdir
    assert body["output_path"].startswith("C:/proj/renders")
