"""The retry policy and the Conductor client against the sandbox over real HTTP, fault by fault."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey, ApiKeyError, AuthError
from prefect_conductor.conductor_cloud.api.client import (
    SUBMIT_ROUNDS,
    ConductorClient,
    ConductorError,
    ConductorUnavailable,
    NotFoundError,
    RequestRejected,
    ServerError,
    SubmissionUnresolved,
    UploadRequest,
)
from prefect_conductor.conductor_cloud.api.job_lookup import Outcome
from prefect_conductor.conductor_cloud.api.post_record import MemoryPostRecords, PostRecord
from prefect_conductor.conductor_cloud.api.retry import (
    RetryEvent,
    RetryPolicy,
    backoff_delay,
    retry_after_seconds,
    send_with_retries,
)
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.errors import ServiceError, SubmitterError, UserError
from prefect_conductor.processes import free_port
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually

TITLE = "shot010 [pc-0123456789]"
"""A posted job's title carries its submission tag, which the lookup matches."""
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=1.5, deadline=10)
SHORT = httpx.Timeout(connect=2.0, read=0.3, write=2.0, pool=2.0)
SLOW = 0.6  # seconds a delayed answer takes: past SHORT's read timeout


def make_client(sandbox: SandboxHandle, tmp_path: Path, **kwargs: Any) -> ConductorClient:
    kwargs.setdefault("policy", FAST)
    kwargs.setdefault("lookup_seconds", 1.0)
    return ConductorClient(
        sandbox.url,
        kwargs.pop("api_key", None) or ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tokens",
        **kwargs,
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
        "job_title": TITLE,
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


def fault(method: str, path: str, action: str = "status", **fields: Any) -> dict[str, Any]:
    return {"method": method, "path": path, "action": action, **fields}


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    return free_port()


@pytest.fixture
def plain_http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as http:
        yield http


# the retry policy on its own --------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert retry_after_seconds(answer("7")) == 7.0
    assert retry_after_seconds(answer("1.5")) == 1.5
    assert retry_after_seconds(answer("-3")) == 0.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= (retry_after_seconds(answer(later)) or 0) <= 30
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert retry_after_seconds(answer(past)) == 0.0
    assert retry_after_seconds(answer("soon")) is None
    assert retry_after_seconds(httpx.Response(503)) is None


def test_backoff_is_full_jitter_with_retry_after_as_a_capped_floor() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    delays = [backoff_delay(policy, 3) for _ in range(300)]
    assert all(0.0 <= d <= 4.0 for d in delays) and max(delays) > 2.0 and min(delays) < 2.0
    assert all(backoff_delay(policy, 30) <= 8.0 for _ in range(50))
    slow = httpx.Response(429, headers={"Retry-After": "5"})
    assert all(5.0 <= backoff_delay(policy, 1, slow) <= 8.0 for _ in range(50))
    very_slow = httpx.Response(429, headers={"Retry-After": "3600"})
    assert backoff_delay(policy, 1, very_slow) == 8.0
    assert backoff_delay(policy, 1, very_slow, remaining=2.5) == 2.5


def exchange_url(sandbox: SandboxHandle, secret: str = "pk-not-a-key") -> str:
    """The token exchange in the form the strict sandbox accepts, with a key it will refuse."""
    query = httpx.QueryParams(
        grant_type="client_credentials",
        scope="owner admin user",
        client_id="x",
        client_secret=secret,
    )
    return f"{sandbox.url}/api/oauth_jwt?{query}"


def test_send_retries_transient_statuses_and_rebuilds_each_request(
    sandbox: SandboxHandle, plain_http: httpx.Client
) -> None:
    sandbox.faults(fault("GET", "/api/oauth_jwt", status=503, retry_after=0, times=2))
    built: list[httpx.Request] = []
    events: list[RetryEvent] = []

    def build() -> httpx.Request:
        built.append(plain_http.build_request("GET", exchange_url(sandbox)))
        return built[-1]

    response = send_with_retries(plain_http, build, FAST, on_retry=events.append)
    assert response.status_code == 401  # got through the outage; no key, so refused
    assert len(built) == 3 and len({id(r) for r in built}) == 3
    assert [(e.attempt, e.reason) for e in events] == [(1, "HTTP 503"), (2, "HTTP 503")]
    assert requests_to(sandbox, "GET", "/api/oauth_jwt") == [503, 503, 401]


def test_send_never_retries_other_4xx(sandbox: SandboxHandle, plain_http: httpx.Client) -> None:
    url = exchange_url(sandbox)  # open to all: faults answer before the key check
    for status in (400, 401, 403, 404, 409, 422):
        sandbox.faults(fault("GET", "/api/oauth_jwt", status=status))
        response = send_with_retries(plain_http, lambda: plain_http.build_request("GET", url), FAST)
        assert response.status_code == status
    assert requests_to(sandbox, "GET", "/api/oauth_jwt") == [400, 401, 403, 404, 409, 422]


def test_send_gives_up_at_once_when_retry_after_is_past_the_deadline(
    sandbox: SandboxHandle, plain_http: httpx.Client
) -> None:
    sandbox.faults(fault("GET", "/api/oauth_jwt", status=429, retry_after=30, times=0))
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_delay=60, deadline=2)
    slept: list[float] = []
    response = send_with_retries(
        plain_http,
        lambda: plain_http.build_request("GET", exchange_url(sandbox)),
        policy,
        sleep=slept.append,
    )
    assert response.status_code == 429 and slept == []  # no wait at all (bench/retry_timing.py)
    assert requests_to(sandbox, "GET", "/api/oauth_jwt") == [429]


def test_send_stops_at_the_deadline(sandbox: SandboxHandle, plain_http: httpx.Client) -> None:
    sandbox.faults(fault("GET", "/api/oauth_jwt", status=500, times=0))
    policy = RetryPolicy(attempts=1000, base_delay=0.05, max_delay=0.2, deadline=0.6)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    response = send_with_retries(
        plain_http,
        lambda: plain_http.build_request("GET", exchange_url(sandbox)),
        policy,
        sleep=sleep,
    )
    assert response.status_code == 500
    assert sum(slept) <= policy.deadline  # never waits past it (its wall time: bench/)
    assert 2 <= len(requests_to(sandbox, "GET", "/api/oauth_jwt")) < 1000


def test_send_transport_errors_retried_or_raised_at_once(
    sandbox: SandboxHandle, plain_http: httpx.Client
) -> None:
    url = exchange_url(sandbox)
    sandbox.faults(fault("GET", "/api/oauth_jwt", "drop_before", times=2))
    response = send_with_retries(plain_http, lambda: plain_http.build_request("GET", url), FAST)
    assert response.status_code == 401
    sandbox.faults(fault("GET", "/api/oauth_jwt", "drop_before", times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        send_with_retries(
            plain_http,
            lambda: plain_http.build_request("GET", url),
            FAST,
            retry_on_transport=False,
        )
    assert requests_to(sandbox, "GET", "/api/oauth_jwt") == [0, 0, 401, 0]


def test_retry_log_lines_carry_no_query(
    sandbox: SandboxHandle, plain_http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="prefect_conductor")
    sandbox.faults(fault("GET", "/api/oauth_jwt", status=502, times=1))
    url = exchange_url(sandbox, secret="pk-shh")
    send_with_retries(plain_http, lambda: plain_http.build_request("GET", url), FAST)
    retry_lines = [r.getMessage() for r in caplog.records if r.name.startswith("prefect_conductor")]
    assert len(retry_lines) == 1
    assert f"GET {sandbox.url}/api/oauth_jwt after HTTP 502" in retry_lines[0]
    assert "pk-shh" not in retry_lines[0] and "client_secret" not in retry_lines[0]


# catalogue, uploads, listing -------------------------------------------------------------------


def test_catalogue_endpoints(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        assert {p["name"] for p in client.projects()} >= {"default", "shot010"}
        assert any(t["name"] == "n1-standard-8" for t in client.instance_types())
        assert any(p["product"] == "jobs" for p in client.packages())
        assert client.extra_environment()[0]["account_id"] == "sandbox-account"
    paths = {r["path"] for r in sandbox.state()["requests"]}
    assert {"/api/v1/projects/", "/api/v1/instance-types", "/api/v1/ee/packages"} <= paths


def test_upload_urls_for_missing_files_and_none_when_nothing_is_missing(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        assert client.get_upload_urls([], "default").single_part == ()  # 204
        wanted = [UploadRequest("/scene/a.txt", "b1kCrCNwJL3QwXbLkwY9xA==", 7)]
        urls = client.get_upload_urls(wanted, "default")
    assert [u.file_path for u in urls.single_part] == ["/scene/a.txt"]
    assert urls.single_part[0].url.startswith(sandbox.url) and urls.multi_part == ()


def test_listing_status_and_kill(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        first = client.submit_job(payload(job_title="a [pc-1]"), "run-9:scout")
        second = client.submit_job(payload(job_title="b [pc-2]"), "run-9:full")
        assert [j["jid"] for j in client.list_jobs(2, 2)] == [second.jid]
        assert [j["jid"] for j in client.list_jobs(first_jid=2)] == [second.jid]
        assert [j["jid"] for j in client.list_jobs()] == [first.jid, second.jid]
        assert [t["frames"] for t in client.get_tasks(first.jid)] == ["1-2", "3-4"]
        client.kill_jobs([first.jid])
        assert client.get_job(first.jid)["status"] == "killed"
        assert {t["status"] for t in client.get_tasks(first.jid)} == {"killed"}
        found = client.find_job("b [pc-2]", "default")
        assert found.outcome is Outcome.FOUND and found.job is not None
        assert found.job["jid"] == second.jid
        assert client.find_job("b [pc-2]", "other").outcome is Outcome.ABSENT
        assert client.find_job("c [pc-3]", "default").outcome is Outcome.ABSENT
    assert requests_to(sandbox, "GET", "/api/v1/tasks") == [200, 200]
    assert requests_to(sandbox, "GET", f"/api/v1/jobs/{first.jid}") == []


# submitting, and never twice -------------------------------------------------------------------


def test_submit_writes_the_submission_id_and_returns_links(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    original = payload()
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(original, "run-1:full")
    assert job.created and job.jid == "00001" and job.uri == "/jobs/00001"
    assert job.dashboard_url == f"{sandbox.url}/job/00001"
    stored = sandbox.jobs()[0]
    assert stored["metadata"] == {"shot": "010", SUBMISSION_METADATA_KEY: "run-1:full"}
    assert original["metadata"] == {"shot": "010"}  # the caller's payload is untouched
    # posted once, and Conductor was asked nothing about it first
    kinds = [(r["method"], r["path"]) for r in sandbox.state()["requests"]]
    assert kinds[-1] == ("POST", "/jobs/") and ("GET", "/api/v1/jobs") not in kinds


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
    assert len(requests_to(sandbox, "POST", "/jobs/")) == 2


def test_connection_dropped_after_the_job_was_stored(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(fault("POST", "/jobs/", "drop_after"))
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-3:full")
    assert job.jid == "00001" and not job.created
    assert len(sandbox.jobs()) == 1
    assert requests_to(sandbox, "POST", "/jobs/") == [0]


def test_connection_dropped_before_the_job_was_stored_is_never_posted_again(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    # From the client's side a dropped connection after sending looks the same either way: it
    # looks, finds nothing, and fails rather than risk a second job.
    sandbox.faults(fault("POST", "/jobs/", "drop_before"))
    with make_client(sandbox, tmp_path) as client, pytest.raises(SubmissionUnresolved) as caught:
        client.submit_job(payload(), "run-4:full")
    message = str(caught.value)
    assert f"job {TITLE!r}" in message and "new submission key" in message
    assert "\n" not in message and not caught.value.transient
    assert sandbox.jobs() == []
    assert requests_to(sandbox, "POST", "/jobs/") == [0]


@pytest.mark.parametrize("status", [429, 503])
def test_not_taken_answers_on_submit_are_posted_again(
    sandbox: SandboxHandle, tmp_path: Path, status: int
) -> None:
    sandbox.faults(fault("POST", "/jobs/", status=status, retry_after=0, times=2))
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), f"run-5-{status}:full")
    assert job.created and len(sandbox.jobs()) == 1
    assert requests_to(sandbox, "POST", "/jobs/") == [status, status, 201]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_that_may_have_landed_is_looked_up_never_posted_again(
    sandbox: SandboxHandle, tmp_path: Path, status: int
) -> None:
    sandbox.faults(fault("POST", "/jobs/", status=status, times=0))
    with make_client(sandbox, tmp_path) as client, pytest.raises(SubmissionUnresolved) as caught:
        client.submit_job(payload(), f"run-5b-{status}:full")
    assert f"HTTP {status}" in str(caught.value) and "on the Conductor dashboard" in str(
        caught.value
    )
    kinds = [(r["method"], r["path"]) for r in sandbox.state()["requests"]]
    after = kinds[kinds.index(("POST", "/jobs/")) + 1 :]
    assert len(after) >= 1 and set(after) == {("GET", "/api/v1/jobs")}
    assert requests_to(sandbox, "POST", "/jobs/") == [status]


def test_a_slow_submit_past_the_read_timeout_makes_one_job(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    # The sandbox stores the slow job after we gave up waiting: only the lookups that follow a
    # read timeout (for lookup_seconds) find it; the client never posts again after a timeout.
    with make_client(sandbox, tmp_path, timeout=SHORT, lookup_seconds=3.0) as client:
        client.projects()  # signed in, so only the job POST is slow
        sandbox.faults(fault("POST", "/jobs/", "delay", seconds=SLOW))
        job = client.submit_job(payload(), "run-6:full")
    # The slow one, answered after the client gave up on it.
    eventually(lambda: requests_to(sandbox, "POST", "/jobs/") == [201], what="the slow POST")
    jobs = sandbox.jobs()
    assert len(jobs) == 1 and jobs[0]["jid"] == job.jid and not job.created
    assert jobs[0]["metadata"][SUBMISSION_METADATA_KEY] == "run-6:full"
    assert requests_to(sandbox, "POST", "/jobs/") == [201]  # the slow one, answered too late


def test_posting_stops_after_bounded_rounds_and_says_no_job_exists(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(fault("POST", "/jobs/", status=503, retry_after=0, times=0))
    with make_client(sandbox, tmp_path) as client, pytest.raises(ServerError) as caught:
        client.submit_job(payload(), "run-7:full")
    message = str(caught.value)
    assert "HTTP 503" in message and "none taken by Conductor" in message
    assert requests_to(sandbox, "POST", "/jobs/") == [503] * SUBMIT_ROUNDS
    assert sandbox.jobs() == []


def test_a_lookup_failing_after_a_dropped_post_is_unresolved(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(
        fault("GET", "/api/v1/jobs", status=500, times=0),  # every lookup fails
        fault("POST", "/jobs/", "drop_after"),
    )
    with make_client(sandbox, tmp_path) as client, pytest.raises(SubmissionUnresolved) as caught:
        client.submit_job(payload(), "run-8:full")
    assert f"job {TITLE!r}" in str(caught.value)
    assert "the last lookup failed" in str(caught.value)
    assert len(sandbox.jobs()) == 1  # it did land; we said we could not tell, and posted no more
    assert requests_to(sandbox, "POST", "/jobs/") == [0]


def test_bad_request_is_not_retried_and_says_why(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client, pytest.raises(RequestRejected) as caught:
        client.submit_job(payload(project="nope"), "run-10:full")
    error = caught.value
    assert "unknown or inactive project 'nope'" in str(error)
    assert (error.status, error.method, error.url) == (400, "POST", f"{sandbox.url}/jobs/")
    assert error.exit_code == 3 and isinstance(error, ServiceError) and not error.transient
    assert requests_to(sandbox, "POST", "/jobs/") == [400]
    assert sandbox.jobs() == []


def test_401_on_submit_refreshes_the_token_and_posts_once(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(fault("POST", "/jobs/", status=401))
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-11:full")
    assert job.created and len(sandbox.jobs()) == 1
    assert requests_to(sandbox, "POST", "/jobs/") == [401, 201]
    assert len(requests_to(sandbox, "GET", "/api/oauth_jwt")) == 2


def test_a_recorded_job_is_returned_without_asking_conductor(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    records = MemoryPostRecords()
    records.write(PostRecord("run-20:full", TITLE, jid="00042"))
    with make_client(sandbox, tmp_path) as client:
        job = client.submit_job(payload(), "run-20:full", records=records)
    assert (job.jid, job.created) == ("00042", False)
    assert not [r for r in sandbox.state()["requests"] if r["path"].startswith("/api/v1/jobs")]
    assert requests_to(sandbox, "POST", "/jobs/") == []


def test_a_post_of_unknown_outcome_is_found_by_its_title_and_recorded(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        posted = client.submit_job(payload(), "run-21:full", records=MemoryPostRecords())
        records = MemoryPostRecords()
        records.write(PostRecord("run-21:full", TITLE))  # the POST's answer never came
        found = client.submit_job(payload(), "run-21:full", records=records)
    assert (found.jid, found.created) == (posted.jid, False)
    assert records.read("run-21:full") == PostRecord("run-21:full", TITLE, jid=posted.jid)
    assert requests_to(sandbox, "POST", "/jobs/") == [201]  # the first one only


def test_a_post_of_unknown_outcome_with_no_job_posts_nothing_and_names_the_title(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    records = MemoryPostRecords()
    records.write(PostRecord("run-22:full", TITLE))
    with make_client(sandbox, tmp_path) as client, pytest.raises(SubmissionUnresolved) as caught:
        client.submit_job(payload(), "run-22:full", records=records)
    message = str(caught.value)
    assert message.startswith(f"job {TITLE!r}: an earlier POST") and "\n" not in message
    assert requests_to(sandbox, "POST", "/jobs/") == []


def test_a_refused_post_leaves_no_record_so_the_fixed_job_posts(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    records = MemoryPostRecords()
    with make_client(sandbox, tmp_path) as client:
        with pytest.raises(RequestRejected):
            client.submit_job(payload(project="nope"), "run-23:full", records=records)
        assert records.read("run-23:full") is None
        job = client.submit_job(payload(), "run-23:full", records=records)
    assert job.created and records.read("run-23:full") == PostRecord(
        "run-23:full", TITLE, jid=job.jid
    )


def test_listings_without_metadata_never_block_a_fresh_submission(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        first = client.submit_job(payload(job_title="a [pc-1]"), "key-a:full")
        assert all("metadata" not in job for job in client.list_jobs())
        second = client.submit_job(payload(job_title="b [pc-2]"), "key-b:full")
    assert first.created and second.created and first.jid != second.jid


# retries of plain calls ------------------------------------------------------------------------


def test_429_honours_retry_after(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()  # sign in first, so only the retried call is timed
        sandbox.faults(fault("GET", "/api/v1/projects/", status=429, retry_after=1))
        started = time.monotonic()
        client.projects()
        waited = time.monotonic() - started
    assert waited >= 0.9  # how much longer a loaded machine takes is bench/retry_timing.py's
    assert requests_to(sandbox, "GET", "/api/v1/projects/")[-2:] == [429, 200]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_status_bursts_are_retried(
    sandbox: SandboxHandle, tmp_path: Path, status: int
) -> None:
    sandbox.faults(fault("GET", "/api/v1/ee/packages", status=status, retry_after=0, times=3))
    with make_client(sandbox, tmp_path) as client:
        assert client.packages()
    assert requests_to(sandbox, "GET", "/api/v1/ee/packages") == [status, status, status, 200]


def test_5xx_that_never_ends_is_a_server_error(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.faults(fault("GET", "/api/v1/ee/packages", status=500, times=0))
    with make_client(sandbox, tmp_path) as client, pytest.raises(ServerError) as caught:
        client.packages()
    assert "GET " in str(caught.value) and "HTTP 500: injected fault" in str(caught.value)
    assert caught.value.status == 500 and caught.value.body
    assert len(requests_to(sandbox, "GET", "/api/v1/ee/packages")) == FAST.attempts


def test_404_is_not_retried(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.faults(fault("GET", "/api/v1/projects/", status=404))
    with make_client(sandbox, tmp_path) as client, pytest.raises(NotFoundError) as caught:
        client.projects()
    assert caught.value.status == 404
    assert requests_to(sandbox, "GET", "/api/v1/projects/") == [404]


def test_a_job_missing_from_its_listing_is_not_found(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client, pytest.raises(NotFoundError) as caught:
        client.get_job("00042")
    assert "no job 00042" in str(caught.value)
    assert requests_to(sandbox, "GET", "/api/v1/jobs") == [200]


def test_slow_response_past_the_read_timeout_is_retried(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path, timeout=SHORT) as client:
        client.projects()
        sandbox.faults(fault("GET", "/api/v1/projects/", "delay", seconds=SLOW))
        assert client.projects()
    # Signing in, the slow request (answered after the client gave up on it) and its retry.
    eventually(
        lambda: len(requests_to(sandbox, "GET", "/api/v1/projects/")) == 3,
        what="three answers to GET projects",
    )
    assert requests_to(sandbox, "GET", "/api/v1/projects/") == [200, 200, 200]


def test_a_slow_server_that_never_answers_is_unavailable(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, deadline=5)
    with make_client(sandbox, tmp_path, timeout=SHORT, policy=policy) as client:
        client.projects()
        sandbox.faults(fault("GET", "/api/v1/projects/", "delay", seconds=SLOW, times=2))
        with pytest.raises(ConductorUnavailable, match="ReadTimeout"):
            client.projects()
    # Both slow requests are answered after the client gave up on them, in this test's log.
    eventually(
        lambda: requests_to(sandbox, "GET", "/api/v1/projects/") == [200, 200, 200],
        what="both slow requests answered",
    )


def test_401_refreshes_the_token_once(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        sandbox.faults(fault("GET", "/api/v1/projects/", status=401))
        assert client.projects()
        sandbox.faults(fault("GET", "/api/v1/projects/", status=401, times=2))
        with pytest.raises(AuthError) as caught:
            client.projects()
    assert caught.value.status == 401 and caught.value.exit_code == 3
    assert requests_to(sandbox, "GET", "/api/v1/projects/") == [200, 401, 200, 401, 401]
    assert len(requests_to(sandbox, "GET", "/api/oauth_jwt")) == 3


def test_403_is_an_auth_error_at_once(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.faults(fault("GET", "/api/v1/projects/", status=403))
    with make_client(sandbox, tmp_path) as client, pytest.raises(AuthError, match="HTTP 403"):
        client.projects()
    assert requests_to(sandbox, "GET", "/api/v1/projects/") == [403]


def test_server_down_is_one_unavailable_line(tmp_path: Path, closed_port: int) -> None:
    key = ApiKey(client_id="c", private_key="secret-xyz")
    policy = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, deadline=2)
    url = f"http://127.0.0.1:{closed_port}"
    with (
        ConductorClient(url, key, token_cache_dir=tmp_path, policy=policy) as client,
        pytest.raises(ConductorUnavailable) as caught,
    ):
        client.submit_job(payload(), "run-12:full")
    message = str(caught.value)
    assert message.startswith(f"cannot reach Conductor at {url}: ConnectError")
    assert "\n" not in message and "secret-xyz" not in message
    assert caught.value.exit_code == 3


def test_transport_failure_after_sign_in_is_unavailable(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        sandbox.faults(fault("GET", "/api/v1/projects/", "drop_before", times=0))
        with pytest.raises(ConductorUnavailable, match="cannot reach Conductor"):
            client.projects()
    assert requests_to(sandbox, "GET", "/api/v1/projects/") == [200] + [0] * FAST.attempts


def test_a_bad_url_is_a_user_error() -> None:
    key = ApiKey(client_id="c", private_key="secret-xyz")
    for url in ("ftp://example.com", "dashboard.conductortech.com", "http://"):
        with pytest.raises(UserError, match="expected http"):
            ConductorClient(url, key)


def test_no_key_anywhere_is_an_auth_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONDUCTOR_API_KEY", raising=False)
    monkeypatch.delenv("CONDUCTOR_API_KEY_PATH", raising=False)
    with pytest.raises(ApiKeyError, match="no Conductor API key"):
        ConductorClient("http://127.0.0.1:9")


def test_url_and_key_come_from_the_environment(
    sandbox: SandboxHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONDUCTOR_URL", sandbox.url + "/")
    monkeypatch.setenv("CONDUCTOR_API_KEY", sandbox.api_key)
    with ConductorClient(token_cache_dir=tmp_path, policy=FAST) as client:
        assert client.url == sandbox.url
        assert client.projects()


# secrets ---------------------------------------------------------------------------------------


def test_secrets_never_reach_errors_or_logs(
    sandbox: SandboxHandle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    closed_port: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = ApiKey.from_text(sandbox.api_key)
    errors: list[Exception] = []
    with make_client(sandbox, tmp_path) as client:
        client.projects()
        token = client.tokens.token()
        scenarios: list[tuple[list[dict[str, Any]], Any]] = [
            ([fault("GET", "/api/v1/projects/", status=500, times=0)], client.projects),
            ([fault("GET", "/api/v1/projects/", status=401, times=2)], client.projects),
            ([fault("GET", "/api/v1/projects/", "drop_before", times=0)], client.projects),
            (
                [fault("POST", "/jobs/", status=503, retry_after=0, times=0)],
                lambda: client.submit_job(payload(), "run-13:full"),
            ),
            ([], lambda: client.submit_job(payload(project="nope"), "run-13:full")),
        ]
        for rules, call in scenarios:
            sandbox.clear_faults()
            if rules:
                sandbox.faults(*rules)
            with pytest.raises(SubmitterError) as caught:
                call()
            errors.append(caught.value)
        later = client.tokens.token()
    wrong = ApiKey(key.client_id, "pk-wrong-secret-5678")
    for url in (f"http://127.0.0.1:{closed_port}", sandbox.url):
        with (
            ConductorClient(url, wrong, token_cache_dir=tmp_path / "other", policy=FAST) as other,
            pytest.raises(SubmitterError) as caught,
        ):
            other.projects()
        errors.append(caught.value)
    assert len(errors) == 7
    assert all(isinstance(e, (ConductorError, AuthError)) for e in errors)
    for error in errors:
        texts = [str(error), repr(error), getattr(error, "body", ""), getattr(error, "url", "")]
        for text in texts:
            for secret in (key.private_key, token, later, "pk-wrong-secret-5678"):
                assert secret not in text, (type(error).__name__, text)
        assert "\n" not in str(error)
    for secret in (key.private_key, token, later, "pk-wrong-secret-5678"):
        assert secret not in caplog.text
    assert key.private_key not in repr(client) and key.private_key not in str(key)
