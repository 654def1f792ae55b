"""Shared fixtures: one sandbox server per test session, reset before each test; the tiers.

Tests that use a slow fixture (tests/tiers.py) are marked ``slow``; ``-m "not slow"`` is the fast
tier. Under pytest-xdist every worker is its own session: its own homes, sandbox and servers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Prefect: a private Prefect home on its local (ephemeral) backend, and a
# private prefect-conductor home, so tests never touch the user's caches or a real server.
_TEST_HOME = Path(tempfile.mkdtemp(prefix="prefect-conductor-tests-"))
os.environ["PREFECT_HOME"] = str(_TEST_HOME / "prefect")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "true"
# A 2-core CI machine running servers in parallel can take longer than Prefect's default 20 s to
# migrate and start the temporary server; a slow start is not a failure of the code under test.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# A lock or limit slot that is never given back (see _free_left_slots) fails a run in minutes,
# not in the 15 and 30 minutes a studio waits for a busy slot.
os.environ.setdefault("PREFECT_CONDUCTOR_SUBMIT_LOCK_WAIT_SECONDS", "180")
os.environ.setdefault("PREFECT_CONDUCTOR_LIMIT_WAIT_SECONDS", "180")
os.environ["PREFECT_CONDUCTOR_HOME"] = str(_TEST_HOME / "conductor")
for _name in ("CONDUCTOR_URL", "CONDUCTOR_API_KEY", "CONDUCTOR_API_KEY_PATH"):
    os.environ.pop(_name, None)

from prefect_conductor.sandbox.handle import SandboxHandle  # noqa: E402
from prefect_conductor.sandbox.server import SandboxServer  # noqa: E402
from tests import system_packages, tiers  # noqa: E402

# The stand-in host (``host``) fixture for the host plugin's tests.
pytest_plugins = ["tests.host_standin.fixtures"]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.mark_slow_tests(items)
    tiers.group_by_server(items)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test outside the slow tier that starts a subprocess fails, naming the fixture to use."""
    if tiers.is_slow(request.node):
        yield
    else:
        yield from tiers.guard_fast_test(request.node)


@pytest.fixture
def cli_subprocess() -> list[str]:
    """The test runs the CLI (or another program) in a subprocess: the command that starts the
    console entry point in a fresh interpreter. Requesting it puts the test in the slow tier."""
    return list(tiers.CLI)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium; the test is skipped naming the package when it is missing (failed
    under CI)."""
    return system_packages.chromium()


@pytest.fixture(scope="session")
def postgresql() -> Path:
    """The bin folder of Debian's PostgreSQL; skipped naming the package when it is missing
    (failed under CI)."""
    return system_packages.postgresql()


@pytest.fixture(scope="session")
def redis_server() -> Path:
    """Debian's redis-server; skipped naming the package when missing (failed under CI)."""
    return system_packages.redis_server()


@pytest.fixture(autouse=True)
def _logging_as_configured() -> None:
    """Every test sees our loggers and httpx's as a fresh process would: enabled, propagating to
    the root (where ``caplog`` listens) and at no level of their own. Libraries that configure
    logging in-process during a slow test (Prefect's engine and server, uvicorn) may leave them
    otherwise, and a later test on the same xdist worker would then capture nothing."""
    logging.disable(logging.NOTSET)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in (
            "prefect_conductor",
            "httpx",
        ):
            logger.disabled = False
            logger.propagate = True
            logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    server = SandboxServer(tmp_path_factory.mktemp("sandbox"), task_seconds=0.1)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxHandle]:
    handle = SandboxHandle(sandbox_server.url, sandbox_server.api_key, sandbox_server.data_dir)
    handle.reset()
    handle.config(task_seconds=0.1)
    yield handle
    handle.clear_faults()
    handle.close()


@pytest.fixture(scope="session")
def prefect_backend() -> Iterator[None]:
    """Prefect's local backend, started once per session (it costs ~10 s to start)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()
    yield
    # Stop the temporary server while pytest's output streams are still open (at exit they are
    # closed, and its goodbye log line would end in a logging error).
    from prefect.server.api.server import SubprocessASGIServer

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            handler.flush()
    # Without a port, the constructor hands back the one temporary server get_client started.
    SubprocessASGIServer().stop()


@pytest.fixture
def conductor_env(sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch) -> SandboxHandle:
    """Point this process's Conductor settings at the sandbox, as a worker's environment would."""
    monkeypatch.setenv("CONDUCTOR_URL", sandbox.url)
    monkeypatch.setenv("CONDUCTOR_API_KEY", sandbox.api_key)
    return sandbox


@pytest.fixture(autouse=True)
def _prefect_limits_start_free(request: pytest.FixtureRequest) -> None:
    """Every slot of the project's Prefect limits is free when a test that uses a Prefect server
    starts, on the server(s) that test uses."""
    if "prefect_backend" in request.fixturenames:
        _free_left_slots(None)
    if "prefect_server" in request.fixturenames:
        _free_left_slots(request.getfixturevalue("prefect_server"))


def _free_left_slots(api_url: str | None) -> None:
    """Give back the slots an earlier test left taken on a Prefect server (``None``: the session's
    local, temporary one).

    Prefect's temporary server runs no lease repossessor (only ``prefect server start`` does), so
    a slot whose release was lost under load is never given back there, and every later run on
    that limit waits out its timeout (seen once in CI: a 15-minute hang). Between tests nothing
    may hold one. A real server frees such a slot when its lease ends (60 s), later than the next
    test would wait for it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    settings = {PREFECT_API_URL: api_url} if api_url else {}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        for limit in client.read_global_concurrency_limits(limit=200):
            if limit.name.startswith("prefect-conductor-") and limit.active_slots:
                logging.getLogger(__name__).warning(
                    "freeing %d slot(s) of %s left taken", limit.active_slots, limit.name
                )
                client.update_global_concurrency_limit(
                    limit.name, GlobalConcurrencyLimitUpdate(active_slots=0)
                )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``prefect server start`` on loopback (its own home, UI on), one per session (per
    xdist worker); yields the API URL."""
    from prefect_conductor.studio.scratch_server import running_prefect_server

    with running_prefect_server(tmp_path_factory.mktemp("prefect-server"), timeout=180) as api:
        yield api
