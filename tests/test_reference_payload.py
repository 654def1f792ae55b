"""Our POST jobs/ bodies for examples/shot010 beside the body the reference submitter sends.

The reference body is built here as cioclarisse 0.3.2 / ciocore 9.2.0 build it: cioclarisse's
``Job.get_args`` plus ``Submission.get_args``, passed through ``conductor_submit.Submit``, which
keeps ciocore's keys and fills its defaults. Every key whose value differs must be in
``DIFFERENCES`` (the same table as docs/render-command.md), with the difference checked below;
a difference nobody chose fails the test.
"""

from __future__ import annotations

import getpass
import posixpath
from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.job.loaders import load_job, load_scene
from prefect_conductor.conductor_cloud.job.render_wrapper import WRAPPER_PATH
from prefect_conductor.conductor_cloud.submission.payload import (
    FULL_TITLE_SUFFIX,
    PREVIEW_SUBMISSION_TAG,
    cost_labels,
)
from prefect_conductor.conductor_cloud.submission.prepare import Preview, build_preview
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "shot010"

#: ciocore 9.2.0 ``Submit``'s payload keys, in its order.
CIOCORE_KEYS = [
    "instance_type",
    "project",
    "tasks_data",
    "output_path",
    "autoretry_policy",
    "docker_image",
    "environment",
    "job_title",
    "local_upload",
    "location",
    "preemptible",
    "metadata",
    "priority",
    "scout_frames",
    "software_package_ids",
    "max_instances",
    "chunk_size",
    "owner",
    "notify",
    "upload_files",
    "upload_size",
]

#: The license server in the reference's default task template (``conductor_job.py``).
REFERENCE_LICENSE_SERVER = "conductor_ilise:40500"

#: The reference's own files on the node (uploaded from $CTEMP/conductor): its wrapper, its
#: pre-render script and a copy of the artist's config file.
REFERENCE_SCRIPTS = ["ciocnode", "cioprep.py", "clarisse.cfg"]

#: Every key where shot010's bodies differ from the reference's, and why (docs/render-command.md).
DIFFERENCES = {
    "tasks_data": "scout/full split into two jobs; each command calls our uploaded wrapper",
    "job_title": "the submission's tag; the gated full job's title gets a suffix too",
    "metadata": "the job's labels, the submission id (no duplicate jobs) and the flow run",
    "scout_frames": "gated scouting holds the other tasks back itself, so none are sent",
    "upload_files": "our wrapper instead of ciocnode, cioprep.py and a clarisse.cfg copy",
    "upload_size": "follows upload_files",
}


@pytest.fixture(scope="module")
def ours() -> Preview:
    job = load_job(EXAMPLE / "job.yaml")
    scene = load_scene(EXAMPLE / "scene_export.json")
    return build_preview(job, scene, fixture_catalog())


def reference_body(ours: Preview) -> dict[str, Any]:
    """What cioclarisse 0.3.2 + ciocore 9.2.0 post for shot010 (one job, every task)."""
    job, scene, plan = ours.prepared.job, ours.prepared.scene, ours.prepared.plan
    temp = posixpath.join(scene.variables["CTEMP"], "conductor")
    package = scene.render_package
    images = " ".join(job.images)
    tasks = []
    for chunk in plan.chunks:
        spec = chunk.host_spec()
        tasks.append(
            {
                "command": f'{temp}/ciocnode "{package}" -image {images}'
                f" -image_frames_list {spec} {spec} -tile_rendering 1 1"
                f" -license_server {REFERENCE_LICENSE_SERVER}",
                "frames": chunk.spec,
            }
        )
    scripts = [posixpath.join(temp, name) for name in REFERENCE_SCRIPTS]
    ours_only = {WRAPPER_PATH, Path(ours.prepared.scene.config_file)}
    dependencies = [str(path) for path in ours.prepared.files if path not in ours_only]
    upload_paths = sorted([*scripts, *dependencies])
    return {
        "instance_type": job.instance_type,
        "project": job.project,
        "tasks_data": tasks,
        "output_path": posixpath.dirname(posixpath.dirname(scene.images[0].save_as)),
        "autoretry_policy": {"preempted": {"max_retries": job.retries}},
        "docker_image": "",
        "environment": dict(ours.prepared.environment),
        "job_title": job.title,
        "local_upload": True,
        "location": "",
        "preemptible": True,
        "metadata": {},
        "priority": 5,
        "scout_frames": ", ".join(str(frame) for frame in plan.scout_frames),
        "software_package_ids": ours.prepared.packages.ids,
        "max_instances": 0,
        "chunk_size": job.chunk_size,
        "owner": getpass.getuser(),
        "notify": {"emails": list(job.notify)},
        "upload_files": [{"md5": "...", "destination": path} for path in upload_paths],
        "upload_size": None,  # the sum of the files' sizes; the scripts are not on this disk
    }


def test_we_send_exactly_ciocores_keys_in_its_order(ours: Preview) -> None:
    for body in ours.bodies.values():
        assert list(body) == CIOCORE_KEYS


def test_every_difference_from_the_reference_is_one_we_chose(ours: Preview) -> None:
    reference = reference_body(ours)
    differing = {
        key for body in ours.bodies.values() for key in CIOCORE_KEYS if body[key] != reference[key]
    }
    assert differing == set(DIFFERENCES)


def test_the_chosen_differences_are_the_documented_ones(ours: Preview) -> None:
    reference = reference_body(ours)
    scout, full = ours.bodies["scout"], ours.bodies["full"]
    # tasks: the same chunks, split between the two jobs, none twice
    frames = [t["frames"] for t in scout["tasks_data"]] + [t["frames"] for t in full["tasks_data"]]
    assert sorted(frames) == sorted(t["frames"] for t in reference["tasks_data"])
    for task in (*scout["tasks_data"], *full["tasks_data"]):
        assert task["command"].startswith(f"sh {WRAPPER_PATH} --mkdir ")
        assert " -- cnode " in task["command"]
        # the same license server and, as the reference's wrapper adds, a config file
        assert f" -license_server {REFERENCE_LICENSE_SERVER} " in task["command"]
        assert f" -config_file {ours.prepared.scene.config_file} " in task["command"]
    # titles
    tag = f" [{PREVIEW_SUBMISSION_TAG}]"
    assert scout["job_title"] == reference["job_title"] + tag
    assert full["job_title"] == reference["job_title"] + FULL_TITLE_SUFFIX + tag
    # metadata: the job's own labels plus ours
    for step, body in ours.bodies.items():
        assert body["metadata"][SUBMISSION_METADATA_KEY].endswith(f":{step}")
        assert set(body["metadata"]) == {
            *ours.prepared.job.metadata,
            *cost_labels(ours.prepared.job),
            "prefect_flow_run",
            SUBMISSION_METADATA_KEY,
        }
    # scout frames: gated here, sent to Conductor there
    assert scout["scout_frames"] == full["scout_frames"] == ""
    assert reference["scout_frames"] == "3, 8"
    # uploads: the same dependencies, our wrapper instead of the reference's three files
    ours_files = {e["destination"] for e in scout["upload_files"]}
    reference_files = {e["destination"] for e in reference["upload_files"]}
    assert ours_files - reference_files == {str(WRAPPER_PATH), ours.prepared.scene.config_file}
    assert {posixpath.basename(p) for p in reference_files - ours_files} == set(REFERENCE_SCRIPTS)
    assert scout["upload_size"] == sum(e["st_size"] for e in scout["upload_files"])
    assert full["upload_files"] == scout["upload_files"]


def test_the_docs_table_lists_every_difference() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "render-command.md").read_text()
    for key in DIFFERENCES:
        assert f"| `{key}` |" in docs


def test_the_strict_sandbox_takes_exactly_the_reference_keys() -> None:
    """The fake server's allowlist and this reference list come from the same ciocore source."""
    from prefect_conductor.sandbox.routes.evidence import JOB_KEYS

    assert set(CIOCORE_KEYS) == JOB_KEYS
