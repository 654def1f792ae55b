"""Batch submission for pipeline automation: many job files, one render-submit run each.

- the folder a batch names expands to its YAML job files, in a stable order;
- a bad file anywhere in a batch is one line naming it, and nothing starts;
- ``submit-batch`` runs each shot as a subflow, keeps going past a shot that fails, and ends with a
  table (shot, run, jobs, state);
- ``submit --deployment`` starts one run per file on the ``batch`` queue, and the same command
  with the same ``--submission-key`` starts nothing twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import State

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.job_files import expand_job_files
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.flows.submit_batch import submit_batch
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.prefect_server import flow_runs, register_deployment
from tests.scenes import EXAMPLES


def make_shots(root: Path, *names: str) -> list[Path]:
    """A copy of the example shot per name, titled after it; their job files."""
    files = []
    for name in names:
        folder = root / name
        shutil.copytree(EXAMPLES, folder)
        job = yaml.safe_load((folder / "job.yaml").read_text())
        job["title"] = f"{name} lighting"
        (folder / "job.yaml").write_text(yaml.safe_dump(job))
        files.append(folder / "job.yaml")
    return files


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_a_folder_means_its_yaml_job_files_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for path in ("b/job.yaml", "a/job.yml", "a/scene_export.json", "catalog.json"):
        (tmp_path / path).write_text("{}")
    named = tmp_path / "extra.json"
    named.write_text("{}")
    found = expand_job_files([tmp_path, named, tmp_path / "b" / "job.yaml"])
    assert found == [tmp_path / "a/job.yml", tmp_path / "b/job.yaml", named]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "missing.yaml", "missing.yaml: no such job file or folder"),
        (lambda root: root, "no job files (*.yaml, *.yml) in this folder"),
    ],
)
def test_a_batch_naming_nothing_usable_is_one_line(
    tmp_path: Path, make: Any, expected: str
) -> None:
    path = make(tmp_path)
    with pytest.raises(UserError) as raised:
        expand_job_files([path])
    assert str(raised.value) == f"{path}: {expected.split(': ', 1)[-1]}"


@pytest.mark.usefixtures("cli_subprocess")
def test_a_bad_shot_in_a_batch_is_one_line_naming_it_and_nothing_starts(tmp_path: Path) -> None:
    _, bad = make_shots(tmp_path / "shots", "sh010", "sh020")
    (bad.parent / "scene_export.json").unlink()
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # never reached
    result = cli("submit", str(tmp_path / "shots"), "--deployment", "render-submit/x", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: no scene export at {bad.parent / 'scene_export.json'}"
    ]


@pytest.mark.usefixtures("prefect_backend")
def test_submit_batch_runs_each_shot_and_tables_them(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    files = make_shots(tmp_path, "sh010", "sh020", "sh030")
    (files[2].parent / "scene_export.json").unlink()
    state = cast(
        State[Any],
        submit_batch(
            job_files=[str(f) for f in files],
            max_concurrent=2,
            options=RunOptions(poll_seconds=0.05),
            return_state=True,
        ),
    )
    assert state.is_failed()
    assert "1 of 3 shots did not complete (first: sh030 lighting, Failed: " in str(state.message)
    rows = state.result(raise_on_failure=False)
    assert [row["shot"] for row in rows] == ["sh010 lighting", "sh020 lighting", "sh030 lighting"]
    assert [row["state"] for row in rows[:2]] == ["Completed", "Completed"]
    assert rows[2]["state"].startswith("Failed: ") and "no scene export" in rows[2]["state"]
    jobs = conductor_env.jobs()
    assert len(jobs) == 4  # a scout and a full job for each good shot, nothing for the bad one
    listed = sorted(jid for row in rows[:2] for jid in row["jobs"].split(", "))
    assert sorted(job["jid"] for job in jobs) == sorted(j.split()[1] for j in listed)
    assert all(row["jobs"].startswith("scout ") for row in rows[:2])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    table = next(a for a in artifacts if a.key == "batch-summary")
    assert "sh020 lighting" in str(table.data)


@pytest.mark.e2e
def test_submit_with_a_deployment_starts_one_run_per_shot_once(
    prefect_server: str, tmp_path: Path
) -> None:
    deployment_id = register_deployment(prefect_server, name="batch-tests")
    with httpx.Client(base_url=prefect_server + "/", timeout=30.0) as http:
        # A pool no worker polls: the runs stay scheduled, for this test to read.
        http.post("work_pools/", json={"name": "batch-tests-pool", "type": "process"})
        http.patch(
            f"deployments/{deployment_id}", json={"work_pool_name": "batch-tests-pool"}
        ).raise_for_status()
    make_shots(tmp_path / "shots", "sh010", "sh020", "sh030")
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home"),
    }
    args = ["submit", str(tmp_path / "shots"), "--deployment", "render-submit/batch-tests"]
    for _ in range(2):
        result = cli(*args, "--submission-key", "seq-a", env=env)
        assert result.returncode == 0, result.stderr
        assert "Started 3 runs of render-submit/batch-tests on work queue 'batch'" in result.stdout
    runs = flow_runs(prefect_server, deployment_id)
    assert len(runs) == 3  # the second command found the first one's runs
    assert sorted(run["parameters"]["options"]["submission_key"] for run in runs) == [
        "seq-a:0",
        "seq-a:1",
        "seq-a:2",
    ]
    assert {run["work_queue_name"] for run in runs} == {"batch"}
    assert sorted(run["parameters"]["job"]["title"] for run in runs) == [
        "sh010 lighting",
        "sh020 lighting",
        "sh030 lighting",
    ]
    wrong = cli("submit", str(tmp_path / "shots"), "--deployment", "render-submit/nope", env=env)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "error: --deployment: no deployment 'render-submit/nope'"
