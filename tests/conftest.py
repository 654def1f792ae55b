"""Shared fixtures: one sandbox server per test session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from prefect_conductor.conductor_cloud.sandbox.handle import SandboxHandle
from prefect_conductor.conductor_cloud.sandbox.server import SandboxServer


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
