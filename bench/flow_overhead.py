"""Prefect's overhead on the render-submit chain, as a measured ratio.

Runs the whole flow against a sandbox that answers at once (tasks finish in 10 ms), and the same
steps as plain function calls with no Prefect at all; prints both wall times and their ratio.
The first flow run (which starts Prefect's temporary server) is reported apart.

Run: python bench/flow_overhead.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from prefect_conductor.conductor_cloud.sandbox.server import SandboxServer

REPO = Path(__file__).resolve().parent.parent
SHOT = REPO / "examples" / "shot010"
RUNS = 3


def steps_without_prefect(key: str) -> float:
    """export -> catalogue -> validate/plan -> upload -> scout submit -> wait -> full submit."""
    from prefect_conductor.conductor_cloud import staging
    from prefect_conductor.conductor_cloud.client import ConductorClient
    from prefect_conductor.conductor_cloud.loaders import load_job
    from prefect_conductor.conductor_cloud.refresh import refresh_catalog
    from prefect_conductor.conductor_cloud.request import SceneSource
    from prefect_conductor.conductor_cloud.submission import payloads, prepare, upload_entries
    from prefect_conductor.conductor_cloud.uploads import upload_files

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


def flow_run(key: str) -> float:
    from prefect_conductor.conductor_cloud.loaders import load_job
    from prefect_conductor.conductor_cloud.request import RunOptions, SceneSource
    from prefect_conductor.flows.render_submit import render_submit

    started = time.perf_counter()
    render_submit(
        job=load_job(SHOT / "job.yaml"),
        scene=SceneSource(export_path=str(SHOT / "scene_export.json")),
        options=RunOptions(poll_seconds=0.05, submission_key=key),
    )
    return time.perf_counter() - started


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    with SandboxServer(work / "sandbox", task_seconds=0.01) as server:
        os.environ["CONDUCTOR_URL"] = server.url
        os.environ["CONDUCTOR_API_KEY"] = server.api_key
        plain = [steps_without_prefect(f"plain-{n}") for n in range(RUNS)]
        first = flow_run("flow-cold")
        warm = [flow_run(f"flow-{n}") for n in range(RUNS)]
    plain_median, warm_median = statistics.median(plain), statistics.median(warm)
    print(f"steps as plain calls (median of {RUNS}): {plain_median:.3f} s")
    print(f"flow, first run (starts Prefect's temporary server): {first:.3f} s")
    print(f"flow, warm (median of {RUNS}): {warm_median:.3f} s")
    print(
        f"Prefect overhead: {warm_median - plain_median:.3f} s per submission,"
        f" ratio flow/plain = {warm_median / plain_median:.1f}x"
    )


if __name__ == "__main__":
    main()
