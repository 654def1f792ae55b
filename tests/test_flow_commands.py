"""The flows' other entry points: the refresh-catalog flow, `submit` and `demo` commands."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from prefect_conductor.cli.demo import run_demo
from prefect_conductor.cli.main import app
from prefect_conductor.conductor_cloud.job.catalog import default_catalog_path, load_catalog
from prefect_conductor.flows.refresh_catalog import refresh_catalog
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_backend")


def test_refresh_catalog_writes_the_cache_the_host_reads(conductor_env: SandboxHandle) -> None:
    default_catalog_path().unlink(missing_ok=True)
    counts = refresh_catalog()
    catalog = load_catalog()
    assert catalog.source_url == conductor_env.url
    assert catalog.age.total_seconds() < 60
    assert counts == {
        "projects": len(catalog.projects),
        "instance_types": len(catalog.instance_types),
        "packages": len(catalog.packages),
    }
    assert "default" in catalog.projects and counts["packages"] > 0


def test_submit_command_prints_job_ids_and_dashboard_links(conductor_env: SandboxHandle) -> None:
    result = CliRunner().invoke(
        app, ["submit", str(EXAMPLES / "job.yaml"), "--poll-seconds", "0.05"]
    )
    assert result.exit_code == 0, result.output
    jobs = conductor_env.jobs()
    assert [len(j["tasks_data"]) for j in jobs] == [2, 3]
    lines = result.output.splitlines()
    assert "Frames Info: 2 Scout / 10 Frames -- 5 Chunks -- 1-10" in lines
    for step, job in zip(("scout", "full"), jobs, strict=True):
        assert f"{step} job {job['jid']}: {conductor_env.url}/job/{job['jid']}" in lines


def test_demo_submits_the_sample_scene_to_its_own_sandbox() -> None:
    before = {name: os.environ.get(name) for name in ("CONDUCTOR_URL", "CONDUCTOR_API_KEY")}
    lines: list[str] = []
    result = run_demo(lines.append)
    assert set(result["jobs"]) == {"scout", "full"}
    assert "Frames Info: 2 Scout / 10 Frames -- 5 Chunks -- 1-10" in lines
    assert any(line.startswith("scout job 00001: 2 tasks (3-4, 7-8)") for line in lines)
    assert any(line.startswith("full job 00002: 3 tasks (1-2, 5-6, 9-10)") for line in lines)
    # then each job's stand-in frames come down and pass the frame check
    assert any(line.startswith("scout job 00001: 8 files downloaded to ") for line in lines)
    assert any(line.startswith("full job 00002: 12 files downloaded to ") for line in lines)
    assert any(line.endswith("frames checked: beauty 6, shadow 6") for line in lines)
    # the sandbox's address and key were only lent to the run
    assert {name: os.environ.get(name) for name in before} == before
