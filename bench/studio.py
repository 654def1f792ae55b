"""A studio's Submit storm: the stack with one Prefect API process beside N, in one run.

For each API process count: ``studio up`` (Redis, PostgreSQL, 4 workers, loopback) against one
sandbox; ``--hosts`` threads stand for artists' hosts and press Submit ``--presses`` times in all
through the host's own trigger (``start_flow_run``, idempotency key per press; every press is
sent twice, a double click); halfway through, one worker is killed and, with N processes, one API
process (both SIGKILL). Then every run is waited for and the figures are printed side by side:
duplicate flow runs, duplicate jobs, lost submissions, Submit's latency as the artist sees it
(p50/p95), 503s and lost answers the trigger met (and retried), failures, runs completed per
minute, Prefect's CPU time per run during the storm (API processes and services, with the start
of the API process that replaced the killed one), and the most concurrent ``POST
jobs/`` the sandbox served against the limit. Everything stays on 127.0.0.1.

Run: python bench/studio.py [--presses 100] [--hosts 20] [--workers 4] [--job-post-limit 4]
     [--limit 4] [--nice 10] [--api-processes 2] [--only 1|N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prefect_conductor.cli.deployment_params import deployment_parameters  # noqa: E402
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY  # noqa: E402
from prefect_conductor.host_export.trigger import (  # noqa: E402
    PrefectError,
    PrefectSettings,
    start_flow_run,
)
from prefect_conductor.sandbox.server import SandboxServer  # noqa: E402
from prefect_conductor.studio import stack  # noqa: E402
from prefect_conductor.studio.postgres import Cluster  # noqa: E402

EXAMPLES = REPO / "examples" / "shot010"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Counting(httpx.HTTPTransport):
    """Counts the 503s and the lost answers the host's trigger meets (it retries them)."""

    def __init__(self) -> None:
        super().__init__()
        self.unavailable = 0
        self.lost = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except httpx.TransportError:
            with self._lock:
                self.lost += 1
            raise
        if response.status_code == 503:
            with self._lock:
                self.unavailable += 1
        return response


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def storm(
    processes: int, args: argparse.Namespace, sandbox: SandboxServer, root: Path
) -> dict[str, Any]:
    """One stack with ``processes`` API processes, one storm; its figures."""
    name = f"api{processes}"
    home = root / name
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(home)
    os.environ["PREFECT_CONDUCTOR_JOB_POST_LIMIT"] = str(args.job_post_limit)
    os.environ["PREFECT_CONDUCTOR_JOB_POST_LIMIT_NAME"] = f"bench-posts-{name}"
    os.environ["CONDUCTOR_URL"] = sandbox.url
    os.environ["CONDUCTOR_API_KEY"] = sandbox.api_key
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    httpx.post(f"{sandbox.url}/_sandbox/reset")
    state = stack.up(
        args.workers,
        lambda line: None,
        api_processes=processes,
        runs_per_worker=args.limit,
        worker_nice=args.nice,
    )
    try:
        settings = PrefectSettings(api_url=state.api_url)
        parameters = json.loads(
            deployment_parameters(EXAMPLES / "job.yaml", scene=EXAMPLES / "scene_export.json")
        )
        transport = Counting()
        latencies: list[float] = []
        before_kill: list[float] = []
        failures: list[str] = []
        run_ids: dict[str, set[str]] = {}
        lock = threading.Lock()
        killed = threading.Event()

        def host(number: int) -> None:
            for press in range(number, args.presses, args.hosts):
                key = f"{name}-press-{press}"
                # Submissions are measured; following the render to the frames is
                # bench/waiting.py's (and would write the frames beside the example scene).
                options = {"submission_key": key, "poll_seconds": 0.5, "follow": "no"}
                body = {**parameters, "options": options}
                for _ in range(2):  # a double click
                    began = time.perf_counter()
                    try:
                        link = start_flow_run(
                            body, idempotency_key=key, settings=settings, transport=transport
                        )
                    except PrefectError as error:
                        with lock:
                            failures.append(str(error))
                        continue
                    with lock:
                        latencies.append(time.perf_counter() - began)
                        if not killed.is_set():
                            before_kill.append(latencies[-1])
                        run_ids.setdefault(key, set()).add(link.id)
                if press >= args.presses // 2 and not killed.is_set():
                    killed.set()
                    os.kill(state.worker_pids[0], signal.SIGKILL)  # the worker, not its runs
                    if processes > 1:  # one of the API processes (uvicorn starts another)
                        os.kill(stack.api_process_pids(state)[0], signal.SIGKILL)

        cpu_before = prefect_cpu_seconds(state)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.hosts) as pool:
            list(pool.map(host, range(args.hosts)))
        runs = wait_for_runs(state.api_url, args.timeout)
        ended = time.monotonic()
        api_cpu, services_cpu = (
            after - before
            for after, before in zip(prefect_cpu_seconds(state), cpu_before, strict=True)
        )
        jobs = httpx.get(f"{sandbox.url}/_sandbox/state", timeout=60).json()
        ids = [job["metadata"][SUBMISSION_METADATA_KEY] for job in jobs["jobs"]]
        completed = [r for r in runs if r["state_type"] == "COMPLETED"]
        keys_done = {r["parameters"]["options"]["submission_key"] for r in completed}
        return {
            "presses (x2 clicks)": args.presses,
            "duplicate flow runs": sum(len(v) - 1 for v in run_ids.values()),
            "duplicate jobs": len(ids) - len(set(ids)),
            "lost submissions": args.presses - len(keys_done),
            "Submit p50 (s)": round(percentile(latencies, 0.50), 3),
            "Submit p95 (s)": round(percentile(latencies, 0.95), 3),
            "p50 before the kills (s)": round(percentile(before_kill, 0.50), 3),
            "p95 before the kills (s)": round(percentile(before_kill, 0.95), 3),
            "503s met (retried)": transport.unavailable,
            "lost answers (retried)": transport.lost,
            "Submit failures": len(failures),
            "runs not completed": len(runs) - len(completed),
            "runs completed / min": round(len(completed) / ((ended - started) / 60), 1),
            "Prefect CPU s / run": round((api_cpu + services_cpu) / max(1, len(runs)), 2),
            "  of which API": round(api_cpu / max(1, len(runs)), 2),
            "  of which services": round(services_cpu / max(1, len(runs)), 2),
            "max concurrent POST jobs/": jobs["in_flight"]["job_posts"]["max"],
            "job-post limit": args.job_post_limit,
            "worker killed midway": "yes" if killed.is_set() else "no",
            "API process killed midway": "yes" if killed.is_set() and processes > 1 else "no",
            "failures": _reasons(failures),
        }
    finally:
        if args.logs:  # the server's and workers' logs, for reading after the stack is gone
            kept = Path(args.logs) / name
            kept.mkdir(parents=True, exist_ok=True)
            for log in (home / "studio").glob("*.log"):
                shutil.copy(log, kept / log.name)
        stack.down(lambda line: None)
        shutil.rmtree(home / "studio" / "redis", ignore_errors=True)
        cluster = Cluster.for_home(home / "studio")
        if cluster.run_as:  # as root the cluster lives outside the temporary folder
            shutil.rmtree(cluster.data_dir, ignore_errors=True)
            cluster.log_file.unlink(missing_ok=True)


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time (user + system) the process has used since it started, with that of its children
    it has waited for when ``children`` (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = sum(int(field) for field in fields[11 : 15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def prefect_cpu_seconds(state: stack.StudioState) -> tuple[float, float]:
    """The CPU time of Prefect's API processes (live ones and those that died) and of its
    services since they started (the storm's share is the difference of two readings)."""
    live = [] if state.api_processes == 1 else stack.api_process_pids(state)
    api = cpu_seconds(state.server_pid, children=True) + sum(cpu_seconds(pid) for pid in live)
    return api, cpu_seconds(state.services_pid)


def _reasons(failures: list[str]) -> dict[str, int]:
    """Each distinct failure (its first 90 characters) and how often it happened."""
    counts: dict[str, int] = {}
    for failure in failures:
        counts[failure[:90]] = counts.get(failure[:90], 0) + 1
    return counts


def _ask(method: str, url: str, body: Any = None) -> Any:
    """The bench's own read of the API, asked again on a lost answer (an API process may be
    killed, by the bench or by uvicorn's supervisor when it misses a health check)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return httpx.request(method, url, json=body, timeout=60).raise_for_status().json()
        except (httpx.TransportError, httpx.HTTPStatusError):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def wait_for_runs(api_url: str, timeout: float) -> list[dict[str, Any]]:
    """The render-submit runs once all are final (the watcher's scheduled runs are not counted)."""
    deadline = time.monotonic() + timeout
    deployment = _ask("GET", f"{api_url}/deployments/name/render-submit/submit-to-conductor")
    body = {"deployments": {"id": {"any_": [deployment["id"]]}}}
    while True:
        runs: list[dict[str, Any]] = _ask("POST", f"{api_url}/flow_runs/filter", body)
        if all(r["state_type"] in FINAL for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--job-post-limit", type=int, default=4)
    parser.add_argument("--limit", type=int, default=stack.RUNS_PER_WORKER, help="runs per worker")
    parser.add_argument("--nice", type=int, default=stack.WORKER_NICE, help="workers' nice")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--api-processes", type=int, default=stack.API_PROCESSES, help="N")
    parser.add_argument("--only", choices=["1", "N"], default=None)
    parser.add_argument("--logs", default="", help="copy the stack's logs into this folder")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    counts = {"1": [1], "N": [args.api_processes]}.get(args.only or "", [1, args.api_processes])
    names = [f"{n} API proc" for n in counts]
    with (
        tempfile.TemporaryDirectory() as tmp,
        SandboxServer(Path(tmp) / "sandbox", task_seconds=0.05) as sb,
    ):
        results: dict[str, dict[str, Any]] = {}
        for name, n in zip(names, counts, strict=True):
            results[name] = storm(n, args, sb, Path(tmp))
            print(name, json.dumps(results[name]), flush=True)  # kept if a later storm fails
    print(
        f"{args.presses} presses from {args.hosts} hosts, {args.workers} workers"
        f" (--limit {args.limit}, nice {args.nice}), {os.cpu_count()} CPUs,"
        f" load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"{'':28}" + "".join(f"{name:>12}" for name in names))
    for row in results[names[0]]:
        if row != "failures":
            print(f"{row:28}" + "".join(f"{results[n][row]!s:>12}" for n in names))
    for name in names:
        for reason, count in results[name]["failures"].items():
            print(f"{name} failure x{count}: {reason}")


if __name__ == "__main__":
    main()
