"""Local processes and loopback ports: the one free-port probe and the one "is it alive" check.

The local server, the studio stack, the sandbox, the tests and the benchmarks all start servers
on loopback, ask whether a process they started still runs, and stop it; each of them uses these
functions, so a fix lands everywhere at once. Standard library only: any layer may import it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

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
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped by a parent that is not us (Linux):
    where the first process of a container reaps nobody, such a process never goes away."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def end(
    pid: int, first: signal.Signals = signal.SIGTERM, *, group: bool = False, timeout: float = 15.0
) -> None:
    """Stop a process we may not have started (or its group): ``first``, up to ``timeout``
    seconds, then SIGKILL and up to ``timeout`` more. The caller has made sure it is ours."""
    if not pid_alive(pid):
        return
    send = os.killpg if group else os.kill
    for number in (first, signal.SIGKILL):
        try:
            send(pid, number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return


def stop(process: subprocess.Popen[Any], timeout: float = 15.0, *, group: bool = False) -> None:
    """Stop a child: SIGINT, up to ``timeout`` seconds, then SIGKILL; nothing if it has exited.

    SIGINT first because Prefect's server and worker stop cleanly on it (the worker ignores
    SIGTERM). With ``group`` the signals go to the process group the child leads (started with
    ``start_new_session=True``), so what it started stops with it. Only the given process (or
    its own group) is ever signalled.
    """
    if process.poll() is not None:
        return

    def send(number: signal.Signals) -> None:
        if group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)

    try:
        send(signal.SIGINT)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(timeout)
    except ProcessLookupError:  # it exited between poll() and the signal
        process.wait(timeout)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first (Linux ``/proc``; none elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found
