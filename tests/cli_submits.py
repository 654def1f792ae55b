"""Several ``prefect-conductor submit`` processes at once against one real Prefect server.

The concurrency tests (one submission key from many runs, Conductor's limits from many workers)
start the CLI as separate processes, each with a per-user folder of its own, the way separate
artists or pipeline jobs would, and wait for all of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES


def submit_at_once(
    prefect_server: str,
    sandbox: SandboxHandle,
    root: Path,
    keys: list[str],
    env: dict[str, str] | None = None,
) -> list[str]:
    """Start one ``submit examples/shot010/job.yaml --submission-key KEY`` per key, all at once;
    wait for them; return each one's standard output. Every one must exit 0."""
    base = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CONDUCTOR_URL": sandbox.url,
        "CONDUCTOR_API_KEY": sandbox.api_key,
        "PREFECT_CONDUCTOR_SUBMIT_LOCK_BUCKETS": "4",  # few limits on the shared test server
        **(env or {}),
    }
    cli = Path(sys.executable).with_name("prefect-conductor")
    processes = [
        subprocess.Popen(
            [
                *(str(cli), "submit", str(EXAMPLES / "job.yaml")),
                *("--submission-key", key, "--poll-seconds", "0.1"),
            ],
            env={**base, "PREFECT_CONDUCTOR_HOME": str(root / f"home-{number}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number, key in enumerate(keys)
    ]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        outputs.append(out)
    return outputs
