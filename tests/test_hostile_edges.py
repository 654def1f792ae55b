"""Secrets and small edges tried as a hostile user would: nothing leaks, nothing fails whole.

A password in CONDUCTOR_URL is never shown; the sandbox answers only requests addressed to a
loopback host name and a 404 for a job id that is no number; a watcher pass skips a listing
record with an odd jid.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.flows.watch_jobs import finished_jobs
from prefect_conductor.processes import free_port
from prefect_conductor.sandbox.handle import SandboxHandle

SECRET = "hunter2-SECRET"


def test_a_password_in_the_conductor_url_is_never_shown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://artist:{SECRET}@127.0.0.1:{free_port()}"
    caplog.set_level(logging.DEBUG)
    with ConductorClient(
        url, ApiKey("client", "key"), token_cache_dir=tmp_path / "tokens", lookup_seconds=1.0
    ) as client:
        shown = [repr(client), client.dashboard_url("00042")]
        with pytest.raises(SubmitterError) as caught:
            client.get_tasks("42")
        shown.append(str(caught.value))
    assert "cannot reach Conductor at http://127.0.0.1:" in shown[-1]
    for text in [*shown, caplog.text]:
        assert SECRET not in text
        assert "artist" not in text


def test_a_run_parameter_address_with_a_password_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        RunOptions(conductor_url=f"https://artist:{SECRET}@dashboard.conductortech.com")
    assert "conductor_url" in str(caught.value)
    assert "must not hold a user name or password" in str(caught.value)
    RunOptions(conductor_url="https://dashboard.conductortech.com/path@x")


@pytest.mark.parametrize(
    "host", ["evil.example", "rebind.attacker.test:80", "127.0.0.1.evil.test", "x@127.0.0.1", ""]
)
def test_the_sandbox_refuses_requests_addressed_to_another_host_name(
    sandbox: SandboxHandle, host: str
) -> None:
    for path in ("/_sandbox/state", "/api/v1/jobs", "/job/00001"):
        answer = httpx.get(f"{sandbox.url}{path}", headers={"Host": host})
        assert answer.status_code == 403, (path, host)
        assert "loopback host name" in answer.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:1", "[::1]:8080"])
def test_the_sandbox_answers_loopback_host_names(sandbox: SandboxHandle, host: str) -> None:
    assert httpx.get(f"{sandbox.url}/_sandbox/state", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("jid", ["abc", "²", "9" * 40, "-1"])
def test_a_job_page_for_a_jid_that_is_no_number_is_a_404(sandbox: SandboxHandle, jid: str) -> None:
    assert httpx.get(f"{sandbox.url}/job/{jid}").status_code == 404


def test_a_watcher_pass_skips_and_logs_a_record_with_an_odd_jid() -> None:
    skipped: list[str] = []
    listing = [
        {"jid": "00041", "status": "success"},
        {"jid": "²", "status": "success"},
        {"jid": "9" * 5000, "status": "success"},
        {"jid": None, "status": "success"},
        "not a record",
        {"jid": "42", "status": "running"},
        {"jid": "43", "status": "failed"},
    ]
    done = finished_jobs(listing, skipped.append)  # type: ignore[arg-type]
    assert done == {"00041", "00043"}
    assert len(skipped) == 4
    assert all(line.startswith("skipped a job record whose jid is not") for line in skipped)
    assert all(len(line) < 120 for line in skipped)
