"""Soak: 200 jobs through the render-submit flow against the sandbox with faults on.

100 flow runs, each a scout job and a full job, while the sandbox drops connections after storing
jobs, answers 503 and 429, and drops storage PUTs (rules that recur every few requests). Prints
jobs submitted, duplicates (must be 0), failures with their reasons, and p50/p95 time per run.

Run: python bench/soak.py [RUNS]
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

REPO = Path(__file__).resolve().parent.parent
SHOT = REPO / "examples" / "shot010"


def faults_for(run: int) -> list[dict[str, object]]:
    """A different mix of faults for each run, so every kind recurs through the soak."""
    mix: list[dict[str, object]] = []
    if run % 3 == 0:
        mix.append({"method": "POST", "path": "/jobs/", "action": "drop_after"})
    if run % 4 == 1:
        mix.append(
            {
                "method": "POST",
                "path": "/jobs/",
                "action": "status",
                "status": 503,
                "retry_after": 0,
            }
        )
    if run % 5 == 2:
        mix.append({"method": "PUT", "path": "/_storage/*", "action": "drop_before", "times": 2})
    if run % 7 == 3:
        mix.append(
            {
                "method": "GET",
                "path": "/api/v1/projects/",
                "action": "status",
                "status": 429,
                "retry_after": 1,
            }
        )
    if run % 2 == 0:
        mix.append(
            {
                "method": "GET",
                "path": "/api/v1/jobs/*/tasks",
                "action": "status",
                "status": 502,
                "retry_after": 0,
            }
        )
    return mix


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    from prefect_conductor.conductor_cloud.loaders import load_job
    from prefect_conductor.conductor_cloud.run_parameters import RunOptions, SceneSource
    from prefect_conductor.flows.render_submit import render_submit

    job = load_job(SHOT / "job.yaml")
    scene = SceneSource(export_path=str(SHOT / "scene_export.json"))
    times: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    with SandboxServer(work / "sandbox", task_seconds=0.02) as server:
        os.environ["CONDUCTOR_URL"] = server.url
        os.environ["CONDUCTOR_API_KEY"] = server.api_key
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        for run in range(runs):
            handle.clear_faults()
            handle.faults(*faults_for(run))
            started = time.perf_counter()
            try:
                render_submit(
                    job=job,
                    scene=scene,
                    options=RunOptions(poll_seconds=0.05, submission_key=f"soak-{run}"),
                )
            except Exception as error:  # a soak counts failures instead of stopping
                failures[f"{type(error).__name__}: {error}"] += 1
            times.append(time.perf_counter() - started)
        jobs = handle.jobs()
        handle.close()
    ids = collections.Counter(j["metadata"].get("prefect_conductor_submission") for j in jobs)
    duplicates = sum(count - 1 for count in ids.values() if count > 1)
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(f"flow runs: {runs}, jobs submitted: {len(jobs)} (expected {2 * runs})")
    print(f"duplicates: {duplicates}")
    print(f"failures: {sum(failures.values())}")
    for reason, count in failures.most_common():
        print(f"  {count} x {reason}")
    print(f"time per run: p50 {statistics.median(times):.2f} s, p95 {p95:.2f} s")


if __name__ == "__main__":
    main()
