"""Waiting: N render runs waiting on Conductor at once, one worker and one watcher alive.

A real Prefect server, the sandbox, the deployments from deployments/prefect.yaml and one process
worker (``--limit 4``: at most four flow-run processes at a time). N runs of ``render-submit`` are
created; each posts its scout job and suspends while the sandbox holds the tasks (a long
``task_seconds``). With every run suspended, the bench prints the processes alive: the worker and
its children, and the watcher (one process running a ``watch-jobs`` pass every 2 s, standing for
the watcher a suspending run starts; the deployment is paused so none is started twice). The runs
render the sample scene, examples/shot010, copied into the bench's folder. Then the sandbox's clock
is shortened (the scouts finish), the watcher resumes the runs, each submits its full job, suspends
again, is resumed, downloads and checks its frames. It prints how every run ended, the jobs and
POSTs the sandbox saw, and the most processes seen meanwhile.

``--postgres`` puts the server on PostgreSQL (Debian's package, as ``studio up`` runs it): SQLite
answers 503 under a few hundred runs' calls, and a studio runs PostgreSQL anyway.

    .venv/bin/python bench/waiting.py --runs 20
    .venv/bin/python bench/waiting.py --runs 200 --postgres
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from prefect_conductor.cli.demo import examples_dir
from prefect_conductor.conductor_cloud.job.loaders import load_job, load_scene
from prefect_conductor.processes import descendants, free_port, stop
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer
from prefect_conductor.studio.postgres import Cluster
from prefect_conductor.studio.scratch_server import running_prefect_server

REPO = Path(__file__).resolve().parent.parent

POOL = "render-submit-pool"
LIMIT = ["--limit", "4"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
WATCHER = (
    "import time\n"
    "from prefect_conductor.flows.watch_jobs import watch_jobs\n"
    "while True:\n"
    "    watch_jobs()\n"
    "    time.sleep(2)\n"
)


def prefect(api: str, *args: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": api}
    subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip


def states(api: httpx.Client, ids: list[str]) -> dict[str, str]:
    """run id -> state name (``Suspended``, ``Completed``...), read in one filter call."""
    body = {"flow_runs": {"id": {"any_": ids}}, "limit": 200}
    found: dict[str, str] = {}
    for start in range(0, len(ids), 200):
        body["flow_runs"] = {"id": {"any_": ids[start : start + 200]}}
        answer = api.post("/flow_runs/filter", json=body)
        if answer.status_code == 200:
            found.update(
                {r["id"]: r["state"]["type"] + "/" + r["state"]["name"] for r in answer.json()}
            )
    return found


def wait_for(api: httpx.Client, ids: list[str], done: Any, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = states(api, ids)
        if len(seen) == len(ids) and all(done(s) for s in seen.values()):
            return seen
        if time.monotonic() > deadline:
            return seen
        time.sleep(2)


def post(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST, again after a 503 (SQLite busy under the worker's and watcher's calls)."""
    for _ in range(30):
        answer = api.post(path, json=body)
        if answer.status_code != 503:
            result: dict[str, Any] = answer.raise_for_status().json()
            return result
        time.sleep(1)
    answer.raise_for_status()
    raise RuntimeError(f"{path}: 503 for 30 s")


def is_jobs(path: str) -> bool:
    return path.rstrip("/").endswith("jobs")


def tally(seen: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for name in seen.values():
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


@contextlib.contextmanager
def postgres_for_server(work: Path) -> Iterator[None]:
    """A PostgreSQL cluster under ``work`` for the server this bench starts (it reads
    PREFECT_API_DATABASE_CONNECTION_URL from this process's environment); removed afterwards."""
    cluster = Cluster.for_home(work / "studio")
    port = free_port()
    cluster.init()
    cluster.start(port)
    try:
        cluster.create_database(port)
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = cluster.url(port)
        yield
    finally:
        os.environ.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        cluster.discard()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--postgres", action="store_true", help="the server on PostgreSQL")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-waiting-"))
    os.environ["PREFECT_HOME"] = str(work / "client-home")
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "conductor-home")
    with (
        postgres_for_server(work) if args.postgres else contextlib.nullcontext(),
        SandboxServer(work / "sandbox", task_seconds=86_400) as sandbox,
        running_prefect_server(work, timeout=240) as api_url,
    ):
        print(f"server database: {'PostgreSQL' if args.postgres else 'SQLite'}")
        handle = SandboxHandle(sandbox.url, sandbox.api_key, sandbox.data_dir)
        os.environ.update(
            PREFECT_API_URL=api_url, CONDUCTOR_URL=sandbox.url, CONDUCTOR_API_KEY=sandbox.api_key
        )
        shot = Path(shutil.copytree(examples_dir() / "shot010", work / "shot"))
        scene_file = shot / "scene_export.json"
        scene = load_scene(scene_file)
        handle.config(save_as={i.path: i.save_as for i in scene.images})
        prefect(api_url, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        prefect(
            api_url, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all"
        )
        env = {
            **os.environ,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        }
        with httpx.Client(base_url=api_url, timeout=60) as api:
            watch = api.get("/deployments/name/watch-jobs/resume-waiting-runs").json()
            api.patch(f"/deployments/{watch['id']}", json={"paused": True}).raise_for_status()
            log = (work / "worker.log").open("w")
            worker = subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, *LIMIT],
                cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            watcher = subprocess.Popen(
                [sys.executable, "-c", WATCHER], cwd=work, env=env,
                stdout=(work / "watcher.log").open("w"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deployment = api.get("/deployments/name/render-submit/submit-to-conductor").json()
                parameters = {
                    "job": load_job(shot / "job.yaml").as_run_parameter(),
                    "scene": {"export_path": str(scene_file)},
                    "options": {"poll_seconds": 1},
                }
                started = time.monotonic()
                create = f"/deployments/{deployment['id']}/create_flow_run"
                ids = [
                    post(api, create, {"parameters": parameters})["id"] for _ in range(args.runs)
                ]
                seen = wait_for(api, ids, lambda s: s == "PAUSED/Suspended", args.timeout)
                waited = time.monotonic() - started
                print(f"runs: {args.runs}; suspended on their scouts after {waited:.0f} s:")
                print(f"  {tally(seen)}")
                time.sleep(3)
                children = []
                for _ in range(3):
                    children.append(len(descendants(worker.pid)))
                    time.sleep(1)
                print(
                    f"processes alive while {args.runs} runs wait: worker 1 + children "
                    f"{max(children)} + watcher 1 (its children: {len(descendants(watcher.pid))})"
                )
                print(f"scout jobs in the sandbox while waiting: {len(handle.jobs())}")
                released = time.monotonic()
                handle.config(task_seconds=0.2)  # the scouts (and later the full jobs) finish
                peak = 0
                deadline = time.monotonic() + args.timeout
                while time.monotonic() < deadline:
                    peak = max(peak, len(descendants(worker.pid)))
                    seen = states(api, ids)
                    if len(seen) == len(ids) and all(
                        s.split("/")[0] in FINAL for s in seen.values()
                    ):
                        break
                    time.sleep(1)
                print(f"after the release, all ended in {time.monotonic() - released:.0f} s:")
                print(f"  {tally(seen)}")
                print(f"most worker children at once while following: {peak} (limit 4)")
                jobs = handle.jobs()
                requests = handle.state()["requests"]
                posts = [r for r in requests if r["method"] == "POST" and is_jobs(r["path"])]
                print(
                    f"sandbox: {len(jobs)} jobs ({2 * args.runs} expected), {len(posts)} POST jobs"
                )
            finally:
                stop(watcher, 10)
                stop(worker, 20)
                log.close()


if __name__ == "__main__":
    main()
