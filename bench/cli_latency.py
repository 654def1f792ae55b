"""Wall time of whole ``prefect-conductor submit`` processes, first and second, as a person sees it.

With no PREFECT_API_URL, the first command of a fresh per-user folder starts the local Prefect
server (a fresh database: migrations first); the second finds it and reuses it. Each figure is
one process from start to exit: interpreter start, imports, finding or starting the server, the
flow run against a local Conductor sandbox (tasks finish in 0.2 s), printing.

Measured, in this order, each with a fresh per-user folder (so each "first" starts a server):
``submit examples/shot010/job.yaml`` twice, then ``submit --preview`` twice. The goal: the second
under 3 s, or under a fifth of the first. The servers are stopped at the end.

Run: python bench/cli_latency.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect_conductor.sandbox.server import SandboxServer

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "examples" / "shot010" / "job.yaml"
COMMAND = [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"]


def run(env: dict[str, str], *args: str) -> float:
    """Seconds for one whole CLI process; a failure stops the bench with its output."""
    started = time.perf_counter()
    result = subprocess.run(
        [*COMMAND, *args],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="prefect-conductor-cli-latency-"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CONDUCTOR_"))}
    base["PREFECT_HOME"] = str(work / "prefect-client")
    homes: list[dict[str, str]] = []
    with SandboxServer(work / "sandbox", task_seconds=0.2) as sandbox:
        base.update(CONDUCTOR_URL=sandbox.url, CONDUCTOR_API_KEY=sandbox.api_key)
        print(f"{'command':<28}{'first (s)':>11}{'second (s)':>12}{'second/first':>14}")
        cases = (("submit", ["--poll-seconds", "0.1"]), ("submit --preview", ["--preview"]))
        for label, extra in cases:
            env = {**base, "PREFECT_CONDUCTOR_HOME": str(work / label.replace(" ", "_"))}
            homes.append(env)
            first = run(env, "submit", str(JOB), *extra)
            second = run(env, "submit", str(JOB), *extra)
            print(f"{label:<28}{first:>11.1f}{second:>12.1f}{second / first:>14.2f}")
        for env in homes:
            subprocess.run([*COMMAND, "server", "stop"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
