"""Prefect's overhead on the render-submit chain, as a measured ratio.

Runs the whole flow against a sandbox that answers at once (tasks finish in 10 ms) and prints,
per submission (median of a few warm runs):

* the flow's wall time, as the caller sees it;
* the sum of its steps' own work: each task run's time in Running, as Prefect recorded it;
* the same steps as plain function calls with no Prefect at all.

The ratios say what Prefect costs around the work: engine, state round trips, artifacts, logs
and the sync flow's heartbeat-thread join (about 1 s, research/prefect-notes.md section 2). The
first flow run, which starts Prefect's temporary server, is reported apart.

Run: python bench/flow_overhead.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prefect_conductor.sandbox.server import SandboxServer

if TYPE_CHECKING:
    from prefect.states import State

REPO = Path(__file__).resolve().parent.parent
SHOT = REPO / "examples" / "shot010"
RUNS = 5


def steps_without_prefect(key: str) -> float:
    """export -> catalogue -> validate/plan -> upload -> scout submit -> wait -> full submit."""
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.api.refresh import refresh_catalog
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
    from prefect_conductor.conductor_cloud.submission.prepare import (
        payloads,
        prepare,
        upload_entries,
    )
    from prefect_conductor.conductor_cloud.transfers import staging
    from prefect_conductor.conductor_cloud.transfers.uploads import upload_files

    started = time.perf_counter()
    job = load_job(SHOT / "job.yaml")
    scene = staging.export_scene(SceneSource(export_path=str(SHOT / "scene_export.json")))
    with ConductorClient() as client:
        catalog, _ = refresh_catalog(client)
        prepared = prepare(job, scene, catalog)
        result = upload_files(client, list(prepared.files), project=job.project)
        md5s = {Path(f.path): f.md5 for f in result.files}
        bodies = payloads(prepared, upload_entries(md5s))
        scout = client.submit_job(bodies["scout"], f"{key}:scout")
        while not all(t["status"] == "success" for t in client.get_tasks(scout.jid)):
            time.sleep(0.05)
        client.submit_job(bodies["full"], f"{key}:full")
    return time.perf_counter() - started


def flow_run(key: str) -> tuple[float, float, int]:
    """Wall time of one flow run, the sum of its task runs' own time, and how many ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
    from prefect_conductor.flows.render_submit import render_submit

    started = time.perf_counter()
    state = cast(
        "State[Any]",
        render_submit(
            job=load_job(SHOT / "job.yaml"),
            scene=SceneSource(export_path=str(SHOT / "scene_export.json")),
            options=RunOptions(poll_seconds=0.05, submission_key=key),
            return_state=True,
        ),
    )
    wall = time.perf_counter() - started
    assert state.is_completed(), state
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
        )
    work = sum(run.total_run_time.total_seconds() for run in task_runs)
    return wall, work, len(task_runs)


def main() -> None:
    work_dir = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work_dir / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    with SandboxServer(work_dir / "sandbox", task_seconds=0.01) as server:
        os.environ["CONDUCTOR_URL"] = server.url
        os.environ["CONDUCTOR_API_KEY"] = server.api_key
        plain = [steps_without_prefect(f"plain-{n}") for n in range(RUNS)]
        first_wall, _, _ = flow_run("flow-cold")
        warm = [flow_run(f"flow-{n}") for n in range(RUNS)]
    plain_median = statistics.median(plain)
    wall_median = statistics.median(wall for wall, _, _ in warm)
    work_median = statistics.median(work for _, work, _ in warm)
    tasks = warm[0][2]
    rows = [
        ("flow, first run (starts Prefect's temporary server)", first_wall),
        (f"flow wall time, warm (median of {RUNS})", wall_median),
        (f"sum of its {tasks} task runs' own time (Running)", work_median),
        ("the same steps as plain calls, no Prefect", plain_median),
    ]
    for label, seconds in rows:
        print(f"{label:<55} {seconds:7.3f} s")
    print(
        f"ratio wall / steps' own time = {wall_median / work_median:.1f}x"
        f" ({wall_median - work_median:.3f} s around the steps);"
        f" ratio wall / plain calls = {wall_median / plain_median:.1f}x"
    )


if __name__ == "__main__":
    main()
