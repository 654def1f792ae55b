"""The test tiers: which tests are ``slow``, decided from the fixtures they use, and a guard.

A test is slow when it uses a fixture that starts a Prefect server or worker, a browser, a
database or a subprocess (``SLOW_FIXTURES``, directly or through another fixture). The fast tier
(``-m "not slow"``) is what a developer runs after every change, so a fast test must never start a
process: the guard makes one that does fail, naming the command and the fixture to request.
Under pytest-xdist (``-n 2 --dist loadgroup``) the tests of each shared Prefect server run on one
worker.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

SLOW_FIXTURES = frozenset(
    {
        "prefect_backend",  # Prefect's temporary server (a subprocess)
        "prefect_server",  # a real `prefect server start`
        "chromium",  # a browser
        "postgresql",  # a database
        "redis_server",  # the studio's Redis
        "cli_subprocess",  # the CLI (or another program) in a subprocess
    }
)

CLI = [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"]
"""The console entry point run in a fresh interpreter, as a person would run it."""


def mark_slow_tests(items: list[pytest.Item]) -> None:
    """Mark every test that uses a slow fixture ``slow``."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


SHARED_SERVERS = ("prefect_server", "prefect_backend")
"""Session fixtures each xdist worker would start for itself: the tests that use one run on one
worker (``--dist loadgroup``), so it is started once, and the tests that share its state (the
project's concurrency limits on it) never run on it at the same time."""


def group_by_server(items: list[pytest.Item]) -> None:
    """Put every test that uses a shared Prefect server in that server's xdist group."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for server in SHARED_SERVERS:
            if server in names:
                item.add_marker(pytest.mark.xdist_group(server))
                break


def is_slow(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None


def guard_fast_test(item: pytest.Item) -> Iterator[None]:
    """Run a fast test; fail it if it started a subprocess (it belongs in the slow tier)."""
    started: list[str] = []
    original = subprocess.Popen.__init__

    def recording_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        # Only the test's own thread counts: the sandbox's stand-in render node runs each task's
        # command (a short ``sh``) from the sandbox server's threads, as part of the fixture.
        if threading.current_thread() is threading.main_thread():
            started.append(args if isinstance(args, str) else " ".join(map(str, args)))
        original(self, args, *rest, **options)

    subprocess.Popen.__init__ = recording_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]
    if started:
        pytest.fail(
            f"{item.nodeid} started a subprocess ({started[0][:120]}) but is not marked slow:"
            " request the cli_subprocess fixture (or another of tests/tiers.py SLOW_FIXTURES)",
            pytrace=False,
        )
