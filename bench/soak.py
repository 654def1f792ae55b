"""Soak: 200 jobs through the render-submit flow against the sandbox with faults on.

100 flow runs, each a scout job and a full job, while the sandbox drops connections after storing
jobs, answers 503 and 429, and drops storage PUTs (rules that recur every few requests). Prints
jobs submitted, duplicates (must be 0), failures with their reasons, and p50/p95 time per run.

Concurrent mode: N processes on one real Prefect server (started here, on loopback) share a pool
of submission keys: the k-th run of every process uses key k at the same moment, as N workers
would when the host's Submit was clicked N times. ``POST jobs/`` takes half a second and the
other faults are re-armed every second while they run. Every key must end with one scout job and
one full job: duplicates must be 0.

Run: python bench/soak.py [RUNS]
     python bench/soak.py --processes 3 [RUNS]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

REPO = Path(__file__).resolve().parent.parent
SHOT = REPO / "examples" / "shot010"
POST_DELAY = {"method": "POST", "path": "/jobs/", "action": "delay", "seconds": 0.5, "times": 0}
"""Concurrent mode: a slow ``POST jobs/`` widens the window between lookup and post."""


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


def count_duplicates(jobs: list[dict[str, Any]]) -> int:
    """Jobs beyond the first for each submission id."""
    ids = collections.Counter(j["metadata"].get("prefect_conductor_submission") for j in jobs)
    return sum(count - 1 for count in ids.values() if count > 1)


def report(
    runs: int,
    expected_jobs: int,
    jobs: int,
    duplicates: int,
    times: list[float],
    failures: collections.Counter[str],
) -> None:
    ordered = sorted(times) or [0.0]
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    print(f"flow runs: {runs}, jobs submitted: {jobs} (expected {expected_jobs})")
    print(f"duplicates: {duplicates}")
    print(f"failures: {sum(failures.values())}")
    for reason, count in failures.most_common():
        print(f"  {count} x {reason}")
    print(f"time per run: p50 {statistics.median(ordered):.2f} s, p95 {p95:.2f} s")


def sequential(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
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
    report(runs, 2 * runs, len(jobs), count_duplicates(jobs), times, failures)


def worker(index: int, processes: int, runs: int) -> None:
    """One process of the concurrent soak: its share of the runs, one JSON line per run."""
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
    from prefect_conductor.flows.render_submit import render_submit

    job = load_job(SHOT / "job.yaml")
    scene = SceneSource(export_path=str(SHOT / "scene_export.json"))
    for run in range(index, runs, processes):
        key = f"soak-key-{run // processes}"  # every process uses key k for its k-th run
        started = time.perf_counter()
        failure = None
        try:
            render_submit(
                job=job, scene=scene, options=RunOptions(poll_seconds=0.05, submission_key=key)
            )
        except Exception as error:  # a soak counts failures instead of stopping
            failure = f"{type(error).__name__}: {error}"
        line = {"run": run, "seconds": time.perf_counter() - started, "failure": failure}
        print(json.dumps(line), flush=True)


def rearm_faults(handle: SandboxHandle, stop: threading.Event) -> None:
    """Every second a new mix of faults (on top of the slow POST) until ``stop`` is set."""
    tick = 0
    while not stop.wait(1.0):
        handle.clear_faults()
        handle.faults(POST_DELAY, *faults_for(tick))
        tick += 1


def concurrent(processes: int, runs: int) -> None:
    sys.path.insert(0, str(REPO))
    from tests.prefect_server import running_prefect_server

    work = Path(tempfile.mkdtemp(prefix="bench-soak-concurrent-"))
    keys = len(range(0, runs, processes))
    times: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    with (
        running_prefect_server(work) as api_url,
        SandboxServer(work / "sandbox", task_seconds=0.02) as server,
    ):
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        handle.faults(POST_DELAY)
        env = {
            **os.environ,
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "ERROR",
            "CONDUCTOR_URL": server.url,
            "CONDUCTOR_API_KEY": server.api_key,
        }
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(i), str(processes), str(runs)],
                env={**env, "PREFECT_CONDUCTOR_HOME": str(work / f"home-{i}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for i in range(processes)
        ]
        stop = threading.Event()
        faults = threading.Thread(target=rearm_faults, args=(handle, stop), daemon=True)
        faults.start()
        started = time.perf_counter()
        for process in workers:
            out, _ = process.communicate()
            for text in out.splitlines():
                if text.startswith("{"):
                    line = json.loads(text)
                    times.append(line["seconds"])
                    if line["failure"]:
                        failures[line["failure"]] += 1
            if process.returncode:
                failures[f"worker exited {process.returncode}"] += 1
        wall = time.perf_counter() - started
        stop.set()
        faults.join()
        jobs = handle.jobs()
        handle.close()
    print(f"processes: {processes}, submission keys: {keys}, wall time: {wall:.1f} s")
    report(runs, 2 * keys, len(jobs), count_duplicates(jobs), times, failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=100)
    parser.add_argument("--processes", type=int, default=0, help="concurrent mode: N processes")
    parser.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(*arguments.worker)
    elif arguments.processes:
        concurrent(arguments.processes, arguments.runs)
    else:
        sequential(arguments.runs)


if __name__ == "__main__":
    main()
