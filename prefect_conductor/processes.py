"""Local processes and loopback ports: the one free-port probe and the one "is it alive" check.

The local server, the studio stack, the sandbox, the tests and the benchmarks all start servers
on loopback and later ask whether a process they started still runs; each of them uses these two
functions, so a fix lands everywhere at once. Standard library only: any layer may import it.
"""

from __future__ import annotations

import os
import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listened on a moment ago on ``host`` (bound to port 0, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: an exited child of this process is reaped, not counted as alive, and
    a process of another user counts as alive."""
    if pid <= 0:
        return False  # 0 and negatives name process groups, never one process
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
