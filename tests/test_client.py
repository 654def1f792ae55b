"""The Conductor client against the sandbox over real HTTP, through every injected fault."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.auth import ApiKey, AuthError, api_key_from_env
from prefect_conductor.conductor_cloud.client import (
    ConductorClient,
    ConductorUnavailable,
    NotFoundError,
    RequestRejected,
    ServerError,
)
from prefect_conductor.conductor_cloud.retry import RetryPolicy
from prefect_conductor.conductor_cloud.sandbox.handle import SandboxHandle
from prefect_conductor.conductor_cloud.status import SUBMISSION_METADATA_KEY

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=1.5, deadline=10)


def make_client(sandbox: SandboxHandle, tmp_path: Path, **kwargs: object) -> ConductorClient:
    return ConductorClient(
        sandbox.url,
        ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tokens",
        policy=kwargs.pop("policy", FAST),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def payload(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "instance_type": "n1-standard-8",
        "project": "default",
        "tasks_data": [
            {"command": "echo 1", "frames": "1-2"},
            {"command": "echo 2", "frames": "3-4"},
        ],
        "output_path": "/renders",
        "metadata": {"shot": "010"},
    }
    body.update(changes)
    return body


def requests_to(sandbox: SandboxHandle, method: str, path: str) -> list[int]:
    return [
        r["status"]
        for r in sandbox.state()["requests"]
        if r["method"] == method and r["path"] == path
    ]


def test_catalogue_endpoints(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        assert {p["name"] for p in client.projects()} >= {"default", "shot010"}
        assert any(t["name"] == "n1-standard-8" for t in client.instance_types())
        assert any(p["product"] == "jobs" for p in client.packages())
        assert client.extra_environment()[0]["account_id"] == "sandbox-account"


def test_submit_writes_the_submission_id_and_returns_links(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-1:full")
    assert job.created and job.jid == "00001"
    assert job.dashboard_url == f"{sandbox.url}/job/00001"
    stored = sandbox.jobs()[0]
    assert stored["metadata"] == {"shot": "010", SUBMISSION_METADATA_KEY: "run-1:full"}


def test_a_second_submit_of_the_same_id_finds_the_first(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        first = client.submit_job(payload(), "run-2:scout")
        again = client.submit_job(payload(), "run-2:scout")
        other = client.submit_job(payload(), "run-2:full")
    assert (first.jid, again.jid, again.created) == ("00001", "00001", False)
    assert other.jid == "00002"
    assert len(sandbox.jobs()) == 2


def test_connection_dropped_after_the_job_was_stored(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "drop_after"})
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-3:full")
    assert job.jid == "00001" and not job.created
    assert len(sandbox.jobs()) == 1


def test_connection_dropped_before_the_job_was_stored(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "drop_before"})
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-4:full")
    assert job.created
    assert len(sandbox.jobs()) == 1
    assert requests_to(sandbox, "POST", "/jobs/") == [0, 201]


def test_server_errors_on_submit_are_looked_up_then_retried(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(
        {"method": "POST", "path": "/jobs/", "action": "status", "status": 502, "times": 2}
    )
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-5:full")
    assert job.created and len(sandbox.jobs()) == 1


def test_bad_request_is_not_retried_and_says_why(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client, pytest.raises(RequestRejected) as caught:
        client.submit_job(payload(project="nope"), "run-6:full")
    assert "unknown or inactive project 'nope'" in str(caught.value)
    assert caught.value.status == 400
    assert requests_to(sandbox, "POST", "/jobs/") == [400]
    assert sandbox.jobs() == []


def test_429_honours_retry_after(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.faults(
        {
            "method": "GET",
            "path": "/api/v1/projects/",
            "action": "status",
            "status": 429,
            "retry_after": 1,
        }
    )
    with make_client(sandbox, tmp_path) as client:
        client.projects()  # sign in first, so only the retried call is timed
        sandbox.faults(
            {
                "method": "GET",
                "path": "/api/v1/projects/",
                "action": "status",
                "status": 429,
                "retry_after": 1,
            }
        )
        started = time.monotonic()
        client.projects()
        waited = time.monotonic() - started
    assert waited >= 0.9
    assert requests_to(sandbox, "GET", "/api/v1/projects/")[-2:] == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_bursts_are_retried(sandbox: SandboxHandle, tmp_path: Path, status: int) -> None:
    sandbox.faults(
        {
            "method": "GET",
            "path": "/api/v1/ee/packages",
            "action": "status",
            "status": status,
            "retry_after": 0,
            "times": 3,
        }
    )
    with make_client(sandbox, tmp_path) as client:
        assert client.packages()
    assert requests_to(sandbox, "GET", "/api/v1/ee/packages") == [status, status, status, 200]


def test_5xx_that_never_ends_is_a_server_error(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.faults(
        {
            "method": "GET",
            "path": "/api/v1/ee/packages",
            "action": "status",
            "status": 500,
            "times": 0,
        }
    )
    with make_client(sandbox, tmp_path) as client, pytest.raises(ServerError, match="HTTP 500"):
        client.packages()
    assert len(requests_to(sandbox, "GET", "/api/v1/ee/packages")) == FAST.attempts


def test_404_is_not_retried(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client, pytest.raises(NotFoundError):
        client.get_job("00042")
    assert requests_to(sandbox, "GET", "/api/v1/jobs/00042") == [404]


def test_slow_response_past_the_read_timeout_is_retried(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    timeout = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
    with make_client(sandbox, tmp_path, timeout=timeout) as client:
        client.projects()
        sandbox.faults(
            {"method": "GET", "path": "/api/v1/projects/", "action": "delay", "seconds": 1.0}
        )
        assert client.projects()


def test_401_refreshes_the_token_once(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        client.tokens._token.value = "expired-or-revoked"  # type: ignore[union-attr]
        assert client.projects()
    assert requests_to(sandbox, "GET", "/api/v1/projects/")[-2:] == [401, 200]


def test_wrong_key_is_an_auth_error_without_the_secret(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    key = ApiKey(client_id=json.loads(sandbox.api_key)["client_id"], private_key="s3cr3t-value")
    client = ConductorClient(sandbox.url, key, token_cache_dir=tmp_path, policy=FAST)
    with client, pytest.raises(AuthError) as caught:
        client.projects()
    assert "s3cr3t-value" not in str(caught.value) and "s3cr3t-value" not in repr(key)


def test_server_down_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = ApiKey(client_id="c", private_key="secret-xyz")
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, deadline=2)
    with (
        ConductorClient(
            f"http://127.0.0.1:{port}", key, token_cache_dir=tmp_path, policy=policy
        ) as client,
        pytest.raises(AuthError) as caught,
    ):
        client.projects()
    message = str(caught.value)
    assert message.startswith(f"cannot reach Conductor at http://127.0.0.1:{port}")
    assert "\n" not in message and "secret-xyz" not in message


def test_transport_failure_after_sign_in_is_unavailable(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        sandbox.faults(
            {"method": "GET", "path": "/api/v1/projects/", "action": "drop_before", "times": 0}
        )
        with pytest.raises(ConductorUnavailable, match="cannot reach Conductor"):
            client.projects()


def test_tokens_are_cached_privately_per_url_and_key(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        cache = client.tokens.cache_file
    assert cache.stat().st_mode & 0o777 == 0o600
    assert cache.parent.stat().st_mode & 0o777 == 0o700
    with make_client(sandbox, tmp_path) as again:
        again.projects()
    oauth = [r for r in sandbox.state()["requests"] if r["path"] == "/api/oauth_jwt"]
    assert len(oauth) == 1  # the second client reused the cached token


def test_secrets_never_reach_logs(
    sandbox: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = ApiKey.from_text(sandbox.api_key)
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        token = client.tokens.token()
    assert key.private_key not in caplog.text and token not in caplog.text
    assert key.private_key not in repr(client) and key.private_key not in str(key)


def test_api_key_sources(tmp_path: Path) -> None:
    import base64

    raw = '{"client_id": "a", "private_key": "b"}'
    assert api_key_from_env({"CONDUCTOR_API_KEY": raw}) == ApiKey("a", "b")
    encoded = base64.b64encode(raw.encode()).decode()
    assert api_key_from_env({"CONDUCTOR_API_KEY": encoded}) == ApiKey("a", "b")
    path = tmp_path / "key.json"
    path.write_text(raw)
    assert api_key_from_env({"CONDUCTOR_API_KEY_PATH": str(path)}) == ApiKey("a", "b")
    assert api_key_from_env({}) is None
    with pytest.raises(AuthError, match="CONDUCTOR_API_KEY_PATH: cannot read"):
        api_key_from_env({"CONDUCTOR_API_KEY_PATH": str(tmp_path / "missing")})
    with pytest.raises(AuthError, match="CONDUCTOR_API_KEY: not an API key") as caught:
        api_key_from_env({"CONDUCTOR_API_KEY": "not-a-key-secret"})
    assert "not-a-key-secret" not in str(caught.value)


def test_listing_status_and_kill(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        first = client.submit_job(payload(), "run-9:scout")
        second = client.submit_job(payload(), "run-9:full")
        assert [j["jid"] for j in client.list_jobs(2, 2)] == [second.jid]
        assert [j["jid"] for j in client.list_jobs()] == [first.jid, second.jid]
        assert [t["frames"] for t in client.get_tasks(first.jid)] == ["1-2", "3-4"]
        client.kill_jobs([first.jid])
        assert client.get_job(first.jid)["status"] == "killed"
        assert {t["status"] for t in client.get_tasks(first.jid)} == {"killed"}
        assert client.find_job("run-9:full")["jid"] == second.jid  # type: ignore[index]
        assert client.find_job("run-9:other") is None
