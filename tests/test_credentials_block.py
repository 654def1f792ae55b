"""The ConductorCredentials block: registered from the package on a real Prefect server, saved
there, and named by a flow run that then submits with its key and URL (none in the environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from prefect_conductor.blocks import ConductorCredentials
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.tasks.common import client_for
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.e2e


@pytest.fixture
def on_server(prefect_server: str) -> Iterator[str]:
    """This process's Prefect client pointed at the session's real server."""
    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server


def test_block_register_finds_the_block_in_the_package(prefect_server: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "prefect_conductor"],
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer = httpx.get(f"{prefect_server}/block_types/slug/conductor-credentials", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["name"] == "Conductor Credentials"


@pytest.mark.usefixtures("cli_subprocess")
def test_importing_the_package_does_not_import_prefect() -> None:
    # The host's embedded Python imports prefect_conductor; the block must stay lazy.
    code = "import sys, prefect_conductor; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_flow_run_submits_with_a_named_credentials_block(
    on_server: str,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("CONDUCTOR_URL", raising=False)
    monkeypatch.delenv("CONDUCTOR_API_KEY", raising=False)
    monkeypatch.delenv("CONDUCTOR_API_KEY_PATH", raising=False)
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path / "home"))
    ConductorCredentials(api_key=SecretStr(sandbox.api_key), conductor_url=sandbox.url).save(
        "studio-farm", overwrite=True
    )
    stored = httpx.get(
        f"{on_server}/block_types/slug/conductor-credentials/block_documents/name/studio-farm",
        timeout=10,
    ).json()
    assert stored["data"]["api_key"] == "********"  # the API never shows the key
    result = render_submit(
        job=load_job(EXAMPLES / "job.yaml"),
        scene=SceneSource(export_path=str(EXAMPLES / "scene_export.json")),
        options=RunOptions(poll_seconds=0.05, credentials_block="studio-farm"),
    )
    assert isinstance(result, dict)
    assert set(result["jobs"]) == {"scout", "full"}
    assert [j["jid"] for j in sandbox.jobs()] == [
        result["jobs"]["scout"]["jid"],
        result["jobs"]["full"]["jid"],
    ]


def test_an_unknown_block_name_is_one_line(on_server: str) -> None:
    with pytest.raises(UserError, match=r"credentials_block: no ConductorCredentials or Secret"):
        client_for(RunOptions(credentials_block="no-such-block"))
