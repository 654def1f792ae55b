"""The studio's processes: started in sessions of their own, found, checked and stopped by id.

Every process ``studio up`` starts leads a process group of its own, so stopping it stops what it
started too (uvicorn's API processes, a worker's flow runs); nothing is ever stopped by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from prefect_conductor.processes import end

STOP_TIMEOUT = 20.0
"""Seconds a process group has to end after SIGINT before it is killed."""


def children(parent: int) -> list[int]:
    """The API processes uvicorn's supervisor ``parent`` forked (not multiprocessing's resource
    tracker beside them), from Linux /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"spawn_main" in command:
            children.append(int(entry.name))
    return sorted(children)


def spawn(command: list[str], env: dict[str, str], log: Path, nice: int = 0) -> int:
    """Start ``command`` in a session of its own (so ``down`` stops its whole group), ``nice``
    steps below this process's CPU priority."""
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if nice:  # a worker needs seconds to start, so its runs (which inherit this) all have it;
        # set from outside, not in preexec_fn, which is unsafe when the caller has threads
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, process.pid, min(19, ours + nice))
    return process.pid


def stop_group(pid: int) -> None:
    """SIGINT to the process group ``pid`` leads (Prefect's server and workers stop cleanly on
    it; a worker ignores SIGTERM), then SIGKILL after a grace."""
    end(pid, signal.SIGINT, group=True, timeout=STOP_TIMEOUT)
