"""End to end: a deployed render run waits on Conductor holding no process, and is followed.

A real Prefect server and process worker on loopback, the deployments from deployments/prefect.yaml
(the watcher deployment paused: the first test runs each watcher pass itself, so no watcher's
process is counted; the second lets the suspending run start its own). The run posts its scout job
and suspends: while it is Suspended the worker has no child process. The watcher resumes it once
the scouts rendered; the re-run re-uses the persisted steps (one scout job, one full job, two POSTs
in all), suspends again on the full job, is resumed, downloads and checks the frames, and
completes. The pipeline's events are read back from the server's event feed, each naming the job
and the flow run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from prefect_conductor.processes import descendants
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.prefect_server import (
    DEPLOYED_POOL,
    busy_retried,
    deployed_worker,
    start_deployment_run,
    watch_once,
)
from tests.scenes import make_job, make_scene

# Starting the server (first test on it), deploying and a worker come before the run itself.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture
def worker(prefect_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[int]:
    """A process worker on the deployed pool; yields its pid."""
    env = {"CONDUCTOR_URL": sandbox.url, "CONDUCTOR_API_KEY": sandbox.api_key}
    with deployed_worker(prefect_server, tmp_path, env) as process:
        yield process.pid


def read_run(api: httpx.Client, run_id: str) -> dict[str, Any] | None:
    answer = api.get(f"/flow_runs/{run_id}")
    return answer.json() if answer.status_code == 200 else None  # 503 when SQLite is busy


def processes_left_while_suspended(
    api: httpx.Client, run_id: str, worker: int, grace: float = 45.0
) -> list[int] | None:
    """The worker's child processes once the suspended run's process has exited (an empty list;
    on a loaded machine its exit takes a few seconds, up to ``grace``), or None when the run left
    Suspended before anything could be seen."""

    def settled() -> tuple[list[int] | None] | None:
        again = read_run(api, run_id)
        if again is None:  # a busy server: ask again
            return None
        if again["state"]["name"] != "Suspended":
            return (None,)
        assert "conductor-waiting" in again["tags"]
        return None if descendants(worker) else ([],)

    return eventually(settled, what="no process held while suspended", timeout=grace, interval=0.5)[
        0
    ]


def events(server: str, name: str, jid: str, related: str) -> list[dict[str, Any]]:
    """The events called ``name`` about job ``jid`` related to ``related`` (this test's run: the
    session's server also holds other tests' events about a job with the same jid), waiting up
    to 60 s for them to reach the feed."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    wanted = EventFilter(
        event=EventNameFilter(name=[name]),
        resource=EventResourceFilter(id=[f"conductor.job.{jid}"]),
    )
    with temporary_settings({PREFECT_API_URL: server}), get_client(sync_client=True) as api:

        def found() -> list[dict[str, Any]]:
            page = api.read_events(filter=wanted, limit=50)
            return [
                e.model_dump(mode="json")
                for e in page.events
                if related in [r.get("prefect.resource.id") for r in e.model_dump()["related"]]
            ]

        return eventually(found, what=f"a {name} event", timeout=60, interval=0.5)


def test_a_deployed_run_waits_suspended_holding_no_process_and_follows_the_job(
    prefect_server: str,
    conductor_env: SandboxHandle,
    worker: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene_file = tmp_path / "shot" / "scene_export.json"
    scene_file.parent.mkdir(parents=True)
    scene = make_scene(scene_file.parent)
    scene_file.write_text(scene.model_dump_json())
    # The scene's render package holds each image's Save As (make_scene writes it as the host's
    # exporter would), so the stand-in renderer writes there and the frame check passes.
    # One stand-in instance and 2 s a frame: the full job's tasks succeed one after another,
    # and each watcher pass may resume the run for the frames of those that did.
    conductor_env.config(task_seconds=3, instances=1, frame_seconds=2)
    monkeypatch.setenv("PREFECT_CONDUCTOR_FRAMES_RESUME_SECONDS", "0")
    parameters = {
        "job": make_job().model_dump(mode="json"),
        "scene": {"export_path": str(scene_file)},
        "options": {"poll_seconds": 1},
    }
    suspended_children: list[list[int]] = []
    following: list[bool] = []  # per look at the suspended run: does it follow frames?
    passes: list[dict[str, Any]] = []
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        run = start_deployment_run(api, "render-submit/submit-to-conductor", parameters)

        def final_state() -> dict[str, Any] | None:
            current = read_run(api, run["id"])
            if current is None:  # a busy server: ask again
                return None
            if current["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return dict(current["state"])
            if current["state"]["name"] == "Suspended":
                following.append(
                    any(t.startswith("conductor-downloaded:") for t in current["tags"])
                )
                held = processes_left_while_suspended(api, run["id"], worker)
                if held is not None:
                    suspended_children.append(held)
                passes.append(watch_once(prefect_server))
            return None

        state = eventually(final_state, what="the flow run finished", timeout=300, interval=1)
        final = read_run(api, run["id"])
    assert state.get("type") == "COMPLETED", (state, (tmp_path / "worker.log").read_text()[-3000:])
    assert final is not None and "conductor-waiting" not in final["tags"]
    # It was suspended on the scouts and on the full job, each time with no process held.
    assert len(suspended_children) >= 2 and all(c == [] for c in suspended_children)
    assert sum(len(p["resumed"]) for p in passes) >= 2
    assert following[0] is False and following[-1] is True  # the scouts, then the full job
    assert all(p["listings"] <= 1 for p in passes)
    jobs = conductor_env.jobs()
    assert [[t["frames"] for t in j["tasks_data"]] for j in jobs] == [
        ["3-4", "7-8"],
        ["1-2", "5-6", "9-10"],
    ]
    posts = [r for r in conductor_env.state()["requests"] if r["method"] == "POST"]
    assert len([r for r in posts if r["path"].rstrip("/").endswith("jobs")]) == 2
    scout, full = (f"{int(j['jid']):05d}" for j in jobs)
    run_resource = f"prefect.flow-run.{run['id']}"
    for name, jid in [
        ("conductor.job.submitted", scout),
        ("conductor.job.submitted", full),
        ("conductor.scouts.finished", scout),
        ("conductor.job.finished", full),
        ("conductor.outputs.downloaded", full),
    ]:
        found = events(prefect_server, name, jid, run_resource)
        assert len(found) == 1, (name, jid, found)  # a resumed run does not repeat one
        assert run_resource in [r["prefect.resource.id"] for r in found[0]["related"]]
    finished = events(prefect_server, "conductor.scouts.finished", scout, run_resource)[0]
    assert finished["payload"]["success"] == 2 and finished["payload"]["failed"] == 0
    # The scouts' estimate of the full job, and the full job's instance-hours beside it.
    assert finished["payload"]["estimate"]["tasks"] == 3
    done = events(prefect_server, "conductor.job.finished", full, run_resource)[0]["payload"]
    assert done["usage"]["timed_tasks"] == 3 and done["usage"]["instance_hours"] > 0
    assert done["estimate"]["tasks"] == 3
    assert finished["resource"]["prefect.resource.name"].startswith("shot010 lighting [pc-")
    downloaded = events(prefect_server, "conductor.outputs.downloaded", full, run_resource)[0][
        "payload"
    ]
    assert downloaded["files"] > 0
    assert Path(downloaded["output_folder"]).is_dir()
    # Each task of the full job announced once, however many times the run was resumed.

    def all_three() -> list[dict[str, Any]] | None:
        found = events(prefect_server, "conductor.task.downloaded", full, run_resource)
        return found if len(found) >= 3 else None

    per_task = eventually(all_three, what="three conductor.task.downloaded events", timeout=60)
    assert sorted((e["payload"]["tid"], e["payload"]["frames"]) for e in per_task) == [
        ("000", "1-2"),
        ("001", "5-6"),
        ("002", "9-10"),
    ]
    for event in per_task:
        folder = Path(event["payload"]["folder"])
        assert all((folder / name).is_file() for name in event["payload"]["files"])


def test_a_suspending_run_starts_the_watcher_which_ends_once_nothing_waits(
    prefect_server: str, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    """No schedule and no pass run by the test: the render run's own suspend starts a watcher
    (a deployment of its own here, passing every second), which resumes it and then ends."""
    from prefect.deployments.runner import EntrypointType, RunnerDeployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_conductor.flows.watch_jobs import watch_jobs

    env = {
        "CONDUCTOR_URL": conductor_env.url,
        "CONDUCTOR_API_KEY": conductor_env.api_key,
        "PREFECT_CONDUCTOR_WATCHER_DEPLOYMENT": "watch-jobs/self-started",
        "PREFECT_CONDUCTOR_WATCH_SECONDS": "1",
    }
    scene_file = tmp_path / "shot" / "scene_export.json"
    scene_file.parent.mkdir(parents=True)
    scene = make_scene(scene_file.parent)
    scene_file.write_text(scene.model_dump_json())
    conductor_env.config(task_seconds=3)
    with deployed_worker(prefect_server, tmp_path, env) as process:
        with temporary_settings({PREFECT_API_URL: prefect_server}):
            made = watch_jobs.to_deployment(
                "self-started",
                entrypoint_type=EntrypointType.MODULE_PATH,
                work_pool_name=DEPLOYED_POOL,
            )
            watcher_id = str(cast(RunnerDeployment, made).apply())
        parameters = {
            "job": make_job().model_dump(mode="json"),
            "scene": {"export_path": str(scene_file)},
            "options": {"poll_seconds": 1},
        }
        with httpx.Client(base_url=prefect_server, timeout=30) as api:
            run = start_deployment_run(api, "render-submit/submit-to-conductor", parameters)
            final = wait_until(api, run["id"], lambda r: r["state"]["type"] in FINAL, 300)
            log = (tmp_path / "worker.log").read_text()[-3000:]
            assert final["state"]["type"] == "COMPLETED", log
            watchers = watcher_runs(api, watcher_id)
            assert 1 <= len(watchers) <= 2, watchers  # one per stretch of waiting, not per pass
            for watcher in watchers:
                ended = wait_until(api, watcher["id"], lambda r: r["state"]["type"] in FINAL, 120)
                assert ended["state"]["type"] == "COMPLETED", ended["state"]
        assert process.poll() is None


FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def wait_until(
    api: httpx.Client, run_id: str, done: Callable[[dict[str, Any]], bool], seconds: float
) -> dict[str, Any]:
    """The run once ``done`` says so (the test fails after ``seconds``)."""
    give_up = time.monotonic() + seconds
    while True:
        run = read_run(api, run_id)
        if run is not None and done(run):
            return run
        assert time.monotonic() < give_up, f"run {run_id} not done in {seconds} s: {run}"
        time.sleep(1)


def watcher_runs(api: httpx.Client, deployment_id: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}}
    runs: list[dict[str, Any]] = busy_retried(
        lambda: api.post("/flow_runs/filter", json=body)
    ).json()
    return runs
