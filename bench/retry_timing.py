"""How long the retry loop takes to give up, against the sandbox: the deadline's wall time.

The tests check what the loop does (which requests it sends, that it never sleeps past its
deadline); how many seconds that takes on this machine is measured here, where a loaded machine
makes a slow figure, not a failed test. Three cases, best and worst of ``--runs``:

1. A 429 whose Retry-After (30 s) is past the policy's deadline (2 s): given up at once.
2. A 500 on every attempt with a 0.6 s deadline: stops at the deadline, however many attempts
   the policy allows.
3. A 429 with Retry-After 1 s through the client: waits the second, then succeeds.

Everything stays on 127.0.0.1. Run: python bench/retry_timing.py [--runs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy, send_with_retries
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer


def timed(runs: int, prepare: Callable[[], None], work: Callable[[], object]) -> list[float]:
    """Wall seconds of ``work`` (after an untimed ``prepare``), ``runs`` times."""
    seconds = []
    for _ in range(runs):
        prepare()
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return seconds


def report(label: str, seconds: list[float], bound: str) -> None:
    print(f"{label:<52} best {min(seconds):6.3f} s  worst {max(seconds):6.3f} s  ({bound})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with (
        tempfile.TemporaryDirectory(prefix="retry-bench-") as work,
        SandboxServer(Path(work) / "sandbox", task_seconds=0.01) as server,
        SandboxHandle(server.url, server.api_key, server.data_dir) as sandbox,
        httpx.Client(timeout=httpx.Timeout(5.0)) as http,
    ):
        # The token exchange in the form the strict sandbox accepts (a key it refuses).
        query = httpx.QueryParams(
            grant_type="client_credentials",
            scope="owner admin user",
            client_id="x",
            client_secret="pk-not-a-key",
        )
        exchange = f"{server.url}/api/oauth_jwt?{query}"

        def faulted(**rule: object) -> Callable[[], None]:
            def prepare() -> None:
                sandbox.reset()
                sandbox.faults({"method": "GET", "path": "/api/oauth_jwt", **rule})

            return prepare

        past = RetryPolicy(attempts=5, base_delay=0.01, max_delay=60, deadline=2)
        seconds = timed(
            runs,
            faulted(action="status", status=429, retry_after=30, times=0),
            lambda: send_with_retries(http, lambda: http.build_request("GET", exchange), past),
        )
        report("429, Retry-After 30 s past a 2 s deadline", seconds, "the tests once said < 1.5 s")

        short = RetryPolicy(attempts=1000, base_delay=0.05, max_delay=0.2, deadline=0.6)
        seconds = timed(
            runs,
            faulted(action="status", status=500, times=0),
            lambda: send_with_retries(http, lambda: http.build_request("GET", exchange), short),
        )
        report("500 on every attempt, 0.6 s deadline", seconds, "the tests once said < 2 s")

        sandbox.reset()
        with ConductorClient(
            server.url, ApiKey.from_text(server.api_key), token_cache_dir=Path(work) / "tokens"
        ) as client:
            client.projects()  # signed in: only the retried call is timed

            def one_429() -> None:
                sandbox.faults(
                    {
                        "method": "GET",
                        "path": "/api/v1/projects/",
                        "action": "status",
                        "status": 429,
                        "retry_after": 1,
                    }
                )

            seconds = timed(runs, one_429, client.projects)
        report("client call, one 429 with Retry-After 1 s", seconds, "at least 1 s; tests: < 5 s")


if __name__ == "__main__":
    main()
