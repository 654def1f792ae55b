"""End to end: a real Prefect server and process worker on loopback, the deployment from
deployments/prefect.yaml (module-path entrypoints: the worker, started outside the checkout, loads
the installed package), a flow run created over REST by the host's own Submit button (twice, as
a double-click), the worker exporting the saved project with the host's batch command, and the
jobs arriving in the sandbox."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.submission.payload import FULL_TITLE_SUFFIX
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.host_scenes import build_shot
from tests.host_standin.fixtures import standin_environment
from tests.prefect_server import deployed_worker, start_deployment_run, watch_once

BATCH_COMMAND = shlex.join([sys.executable, "-m", "prefect_conductor.host_export.batch_export"])

# Starting the server (first test on it), deploying and a worker come before the run itself.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def worker(prefect_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[None]:
    env = {
        "CONDUCTOR_URL": sandbox.url,
        "CONDUCTOR_API_KEY": sandbox.api_key,
        # The host in batch mode: the stand-in host runs the plugin's batch exporter.
        "PREFECT_CONDUCTOR_HOST_BATCH": BATCH_COMMAND,
        "PYTHONPATH": standin_environment()["PYTHONPATH"],
    }
    with deployed_worker(prefect_server, tmp_path, env):
        yield


def quick_start_job(app: Any, root: Path) -> Any:
    """The submitter guide's quick start in the stand-in host: a ConductorJob set up as an artist
    would."""
    shot = build_shot(app, root)
    app.load_project(str(shot.project))
    job = app.ui_create("ConductorJob", "ConductorJob")
    app.ui_set(job, "title", "shot010 lighting")
    app.ui_add(
        job, "images", app.item("project://scene/beauty"), app.item("project://scene/shadow")
    )
    app.ui_press(job, "refresh")
    app.ui_choose(job, "project", "default")
    app.ui_set(job, "use_custom_frames", True)
    app.ui_set(job, "custom_frames", "1-10")
    app.ui_set(job, "chunk_size", 2)
    app.ui_set(job, "use_scout_frames", True)
    app.ui_set(job, "scout_frames", "3,8")
    app.ui_choose(job, "instance_type", "n1-standard-8 (8 cores, 30 GB)")
    return job


def test_submit_in_the_host_runs_on_a_worker_and_submits_scout_then_full(
    prefect_server: str,
    conductor_env: SandboxHandle,
    worker: None,
    host: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = quick_start_job(host, tmp_path / "shot")
    monkeypatch.setenv("PREFECT_API_URL", prefect_server)
    pressed = datetime.now(UTC)
    host.ui_press(job, "submit")
    host.ui_press(job, "submit")  # a double-click: the same idempotency key, the same run
    assert not host.lines("error"), host.lines("error")
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        deployment = api.get("/deployments/name/render-submit/submit-to-conductor").json()
        assert deployment["entrypoint"] == "prefect_conductor.flows.render_submit:render_submit"
        assert not deployment["pull_steps"]
        # The UI's Run form: every ConductorJob field with its description, unknown fields refused.
        form = deployment["parameter_openapi_schema"]["definitions"]["ConductorJob"]
        assert form["additionalProperties"] is False
        assert all(field.get("description") for field in form["properties"].values())
        body = {"deployments": {"id": {"any_": [deployment["id"]]}}}
        # This test's runs only: earlier tests on the same server ran the deployment too.
        runs = [
            run
            for run in api.post("/flow_runs/filter", json=body).json()
            if datetime.fromisoformat(run["created"]) >= pressed
        ]
        assert len(runs) == 1
        run_id = runs[0]["id"]

        def final_state() -> str | None:
            answer = api.get(f"/flow_runs/{run_id}")
            if answer.status_code != 200:  # SQLite-backed servers answer 503 when busy
                return None
            state = answer.json()["state"]
            if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return str(state["type"])
            if state["name"] == "Suspended":  # waiting on Conductor
                watch_once(prefect_server)  # a pass of the watch-jobs deployment
            return None

        state = eventually(final_state, what="the flow run finished", timeout=180, interval=1)
        run = api.get(f"/flow_runs/{run_id}").json()
    assert state == "COMPLETED", run["state"]
    assert run["name"] == "shot010 lighting 1-10"
    jobs = conductor_env.jobs()
    assert [[t["frames"] for t in j["tasks_data"]] for j in jobs] == [
        ["3-4", "7-8"],
        ["1-2", "5-6", "9-10"],
    ]
    titles = [j["job_title"] for j in jobs]
    assert titles[0].startswith("shot010 lighting [pc-")
    assert titles[1].startswith(f"shot010 lighting{FULL_TITLE_SUFFIX} [pc-")
    # the render package the worker's batch export wrote, named after the job
    package = {Path(f["destination"]).name for f in jobs[0]["upload_files"]}
    assert "shot010.shot010_lighting.cio.project" in package
    # The other deployments, each once through the same worker from the installed package.
    full = jobs[1]["jid"]
    downloaded = run_deployment(
        prefect_server,
        "download-outputs/download-frames",
        {"jid": full, "output_folder": str(tmp_path / "down"), "poll_seconds": 1},
    )
    assert downloaded["state"]["type"] == "COMPLETED", downloaded["state"]
    assert sorted(p.name for p in (tmp_path / "down").rglob("beauty.*.exr")) == [
        f"beauty.{frame:04d}.exr" for frame in (1, 2, 5, 6, 9, 10)
    ]
    for name in ("refresh-catalog/refresh", "watch-jobs/resume-waiting-runs"):
        finished = run_deployment(prefect_server, name, {})
        assert finished["state"]["type"] == "COMPLETED", (name, finished["state"])


def run_deployment(server: str, name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A run of deployment ``name`` that the worker picks up; the run once it has finished."""
    with httpx.Client(base_url=server, timeout=30) as api:
        run = start_deployment_run(api, name, parameters)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            answer = api.get(f"/flow_runs/{run['id']}")
            if answer.status_code == 200 and answer.json()["state"]["type"] in (
                "COMPLETED",
                "FAILED",
                "CRASHED",
                "CANCELLED",
            ):
                return dict(answer.json())
            time.sleep(1)
        return dict(api.get(f"/flow_runs/{run['id']}").json())
