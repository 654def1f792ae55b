"""Stopping a child process the tests started: politely, then for sure.

Prefect's server and worker stop cleanly on SIGINT (the worker ignores SIGTERM), so SIGINT goes
first; a process still running after ``timeout`` seconds is killed. With ``group`` the signals go
to the process group the child leads (started with ``start_new_session=True``), so what it started
stops with it. Only the given process (or its own group) is ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

STOP_TIMEOUT = 15.0


def stop(
    process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT, *, group: bool = False
) -> None:
    """SIGINT, wait up to ``timeout`` seconds, then SIGKILL and wait; nothing if it has exited."""
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
