"""End to end: a deployed run re-renders a failed frame across suspends, posting each job once.

A real Prefect server and process worker on loopback, as ``test_waiting`` runs them, each watcher
pass run by the test. The full job fails frame 5 once; the run is resumed after the full job,
posts the re-render job and suspends on it, is resumed again and re-runs from the top: the
persisted choice and the duplicate guard give it the same job, so three jobs are posted in all,
and the run completes with the re-render's events naming its attempt and first job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.prefect_server import start_deployment_run, watch_once
from tests.scenes import make_job, make_scene
from tests.test_waiting import events, read_run, worker  # noqa: F401 - the worker fixture

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600), pytest.mark.usefixtures("worker")]


def test_a_deployed_run_renders_a_failed_frame_again_once_across_its_suspends(
    prefect_server: str, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene_file = tmp_path / "shot" / "scene_export.json"
    scene_file.parent.mkdir(parents=True)
    scene = make_scene(scene_file.parent)
    scene_file.write_text(scene.model_dump_json())
    conductor_env.config(task_seconds=2, fail_frames=[5], fail_attempts=1)
    parameters = {
        "job": make_job().model_dump(mode="json"),
        "scene": {"export_path": str(scene_file)},
        "options": {"poll_seconds": 1},
    }
    resumed = 0
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        run = start_deployment_run(api, "render-submit/submit-to-conductor", parameters)

        def final_state() -> dict[str, Any] | None:
            nonlocal resumed
            current = read_run(api, run["id"])
            if current is None:
                return None
            if current["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return dict(current["state"])
            if current["state"]["name"] == "Suspended":
                resumed += len(watch_once(prefect_server)["resumed"])
            return None

        state = eventually(final_state, what="the flow run finished", timeout=400, interval=1)
    assert state.get("type") == "COMPLETED", (state, (tmp_path / "worker.log").read_text()[-3000:])
    assert resumed >= 3  # the scouts, the full job, the re-render
    jobs = conductor_env.jobs()
    assert [[t["frames"] for t in j["tasks_data"]] for j in jobs] == [
        ["3-4", "7-8"],
        ["1-2", "5-6", "9-10"],
        ["5-6"],
    ]
    posts = [r for r in conductor_env.state()["requests"] if r["method"] == "POST"]
    assert len([r for r in posts if r["path"].rstrip("/").endswith("jobs")]) == 3
    full, rerender = jobs[1]["jid"], jobs[2]["jid"]
    run_resource = f"prefect.flow-run.{run['id']}"
    for name in ("conductor.job.submitted", "conductor.job.finished"):
        found = events(prefect_server, name, rerender, run_resource)
        assert len(found) == 1, (name, found)  # a resumed run does not repeat one
        assert found[0]["payload"]["attempt"] == 1
        assert found[0]["payload"]["first_jid"] == full
    downloaded = events(prefect_server, "conductor.outputs.downloaded", full, run_resource)[0]
    assert downloaded["payload"]["files"] == 20
    assert {k: v["found"] for k, v in downloaded["payload"]["frames"].items()} == {
        "beauty": 10,
        "shadow": 10,
    }
