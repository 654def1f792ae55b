"""The client's protocol over httpx.MockTransport: the forms it sends, the 401 refresh, the token
rules, and the no-duplicate policy, deterministic and without sleeping."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey, AuthError
from prefect_conductor.conductor_cloud.api.client import (
    ConductorClient,
    ConductorUnavailable,
    SubmissionUnresolved,
)
from prefect_conductor.conductor_cloud.api.job_lookup import Outcome, find_posted
from prefect_conductor.conductor_cloud.api.post_record import MemoryPostRecords, PostRecord
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.errors import is_transient
from prefect_conductor.sandbox.routes import evidence
from tests.fake_conductor import ACCOUNT, CLIENT_ID, PRIVATE_KEY, URL, FakeConductor

POLICY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=30)
FIRST_ATTEMPT = datetime(2026, 12, 2, 8, 30, tzinfo=timezone.utc)  # noqa: UP017 - 3.10


def make(fake: FakeConductor, tmp_path: Path, **kwargs: Any) -> ConductorClient:
    kwargs.setdefault("lookup_seconds", 1000.0)
    return ConductorClient(
        URL,
        ApiKey(CLIENT_ID, PRIVATE_KEY),
        token_cache_dir=tmp_path / "tokens",
        policy=POLICY,
        transport=fake.transport(),
        sleep=lambda _seconds: None,
        **kwargs,
    )


TITLE = "shot [pc-0123456789]"


def submit(client: ConductorClient, submission_id: str = "key-1:scout", records: Any = None) -> Any:
    return client.submit_job(
        {"project": "default", "job_title": TITLE},
        submission_id,
        first_attempt=FIRST_ATTEMPT,
        records=records,
    )


def unknown_outcome(submission_id: str = "key-1:scout") -> MemoryPostRecords:
    """Records of a POST whose answer never came: the title without a job id."""
    records = MemoryPostRecords()
    records.write(PostRecord(submission_id, TITLE))
    return records


def filters(fake: FakeConductor, path: str = "/api/v1/jobs") -> list[str]:
    return [r.url.params["filter"] for r in fake.sent("GET", path)]


# the token exchange and the 401 refresh ----------------------------------------------------------


def test_the_exchange_is_ciocores_get_and_the_401_refresh_an_auth_flow(tmp_path: Path) -> None:
    fake = FakeConductor()
    with make(fake, tmp_path) as client:
        client.get_tasks("42")
        fake.refuse_tokens.add(fake.issued[-1])  # revoked: the next call meets a 401
        client.get_tasks("42")
    exchanges = fake.sent("GET", "/api/oauth_jwt")
    assert len(exchanges) == 2 and not fake.sent("POST", "/api/oauth_jwt")
    assert list(exchanges[0].url.params.keys()) == [
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
    ]
    assert exchanges[0].url.params["scope"] == "owner admin user"
    sent = [bearer for path, bearer in fake.bearers if path == "/api/v1/tasks"]
    assert sent == [f"Bearer {fake.issued[0]}"] * 2 + [f"Bearer {fake.issued[1]}"]


def test_a_second_401_is_an_auth_error_after_one_refresh(tmp_path: Path) -> None:
    fake = FakeConductor()
    with make(fake, tmp_path) as client:
        client.get_tasks("42")
        fake.refuse_tokens = _RefuseAll()
        with pytest.raises(AuthError, match="HTTP 401"):
            client.get_tasks("42")
    assert len(fake.sent("GET", "/api/oauth_jwt")) == 2
    assert len(fake.sent("GET", "/api/v1/tasks")) == 3


class _RefuseAll(set[str]):
    def __contains__(self, item: object) -> bool:
        return True


def test_a_cached_token_for_another_host_is_exchanged_again(tmp_path: Path) -> None:
    fake = FakeConductor(audience="https://api.elsewhere.test")
    with make(fake, tmp_path) as client:
        client.get_tasks("1")
        client.get_tasks("1")  # this process's own token is kept: one exchange, not one a call
    assert len(fake.sent("GET", "/api/oauth_jwt")) == 1
    with make(fake, tmp_path) as client:  # a new process: the cache holds another host's token
        client.get_tasks("1")
    assert len(fake.sent("GET", "/api/oauth_jwt")) == 2
    fake = FakeConductor()  # aud names api.example.test: what ciocore derives from dashboard.
    with make(fake, tmp_path / "b") as client:
        client.get_tasks("1")
    with make(fake, tmp_path / "b") as client:
        client.get_tasks("1")
        assert client.tokens.account_id() == ACCOUNT
    assert len(fake.sent("GET", "/api/oauth_jwt")) == 1


def test_the_token_lock_is_a_filelock_beside_the_cache(tmp_path: Path) -> None:
    fake = FakeConductor()
    with make(fake, tmp_path) as client:
        client.get_tasks("1")
        assert client.tokens.cache_file.with_suffix(".lock").exists()


def test_the_secret_never_reaches_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    client = ConductorClient(
        URL,
        ApiKey(CLIENT_ID, PRIVATE_KEY),
        token_cache_dir=tmp_path,
        policy=POLICY,
        transport=httpx.MockTransport(refuse),
        sleep=lambda _s: None,
    )
    with client, pytest.raises(ConductorUnavailable) as caught:
        client.get_tasks("1")
    fake = FakeConductor()
    with make(fake, tmp_path / "ok") as ok:
        ok.get_tasks("1")
    encoded = httpx.URL(URL, params={"s": PRIVATE_KEY}).query.decode().removeprefix("s=")
    for text in (str(caught.value), repr(caught.value), caught.value.url, caplog.text):
        for secret in (PRIVATE_KEY, encoded, "pk+very/secret=9f8e", "pk%2Bvery%2Fsecret"):
            assert secret not in text
    assert "client_secret=REDACTED" in caplog.text
    assert "\n" not in str(caught.value) and "signing in" in str(caught.value)


# reading jobs and tasks --------------------------------------------------------------------------


def test_tasks_and_jobs_are_read_with_the_evidenced_filters(tmp_path: Path) -> None:
    fake = FakeConductor()
    fake.jobs = [{"jid": "00041"}, {"jid": "00042", "status": "running"}]
    fake.tasks = [
        {"jobLabel": "00042", "taskLabel": "000", "status": "success"},
        {"jobLabel": "00042", "taskLabel": "001", "status": "rendering"},
    ]
    with make(fake, tmp_path) as client:
        assert [t["taskLabel"] for t in client.get_tasks("42")] == ["000", "001"]
        assert client.get_job("00042")["status"] == "running"
        fake.ignore_jid_bounds = True  # a server that ignores the bounds: we still pick ours
        assert client.get_job("42")["jid"] == "00042"
    assert filters(fake, "/api/v1/tasks") == ["jobLabel_eq_00042"]
    assert filters(fake) == ["jid_gt_00041,jid_lt_00043"] * 2
    assert all("/jobs/000" not in r.url.path for r in fake.requests)


def test_tasks_of_another_job_are_dropped(tmp_path: Path) -> None:
    fake = FakeConductor()
    every_task = [
        {"jobLabel": "00007", "taskLabel": "000", "status": "success"},
        {"jobLabel": "00042", "taskLabel": "000", "status": "running"},
    ]

    def unfiltered(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/tasks":  # a server that ignores the filter
            return httpx.Response(200, json={"data": every_task})
        return fake.handle(request)

    client = ConductorClient(
        URL,
        ApiKey(CLIENT_ID, PRIVATE_KEY),
        token_cache_dir=tmp_path,
        policy=POLICY,
        transport=httpx.MockTransport(unfiltered),
    )
    with client:
        assert client.get_tasks("00042") == [every_task[1]]


# the duplicate lookup ---------------------------------------------------------------------------


def test_a_first_submission_posts_without_listing_anything(tmp_path: Path) -> None:
    fake = FakeConductor()
    with make(fake, tmp_path) as client:
        job = submit(client)
    assert job.created and job.jid == "00001"
    assert filters(fake) == []
    posted = json.loads(fake.sent("POST", "/jobs/")[0].content)
    assert posted["metadata"] == {SUBMISSION_METADATA_KEY: "key-1:scout"}


def test_after_an_unknown_outcome_one_day_of_the_account_is_listed_with_evidenced_fields(
    tmp_path: Path,
) -> None:
    fake = FakeConductor()
    fake.store({"job_title": TITLE, "project": "default"})
    with make(fake, tmp_path) as client:
        job = submit(client, records=unknown_outcome())
    assert (job.jid, job.created) == ("00001", False)
    assert filters(fake) == [f"account_id_eq_{ACCOUNT},created_gt_2026-12-01"]
    fields = fake.sent("GET", "/api/v1/jobs")[0].url.params["fields"].split(",")
    assert set(fields) == evidence.JOB_LIST_FIELDS
    assert not fake.sent("POST", "/jobs/")


def test_a_truncated_listing_is_walked_by_jid_until_empty(tmp_path: Path) -> None:
    fake = FakeConductor(page_size=2)
    for n in range(5):
        fake.store({"job_title": f"other [pc-{n}]", "project": "default"})
    fake.store({"job_title": TITLE, "project": "default"})
    with make(fake, tmp_path) as client:
        job = submit(client, records=unknown_outcome())
    assert (job.jid, job.created) == ("00006", False)
    assert not fake.sent("POST", "/jobs/")
    base = f"account_id_eq_{ACCOUNT},created_gt_2026-12-01"
    assert filters(fake) == [base, f"{base},jid_gt_00002", f"{base},jid_gt_00004"]


def test_a_listing_that_ignores_the_bound_cannot_tell_and_nothing_is_posted(
    tmp_path: Path,
) -> None:
    fake = FakeConductor(page_size=2, ignore_jid_bounds=True)
    for n in range(3):
        fake.store({"job_title": f"other [pc-{n}]", "project": "default"})
    with (
        make(fake, tmp_path, lookup_seconds=0) as client,
        pytest.raises(SubmissionUnresolved) as caught,
    ):
        submit(client, records=unknown_outcome())
    assert "cannot tell" in str(caught.value) and "ignored jid_gt_00002" in str(caught.value)
    assert not fake.sent("POST", "/jobs/") and not is_transient(caught.value)


def test_lookup_outcomes_on_their_own() -> None:
    day = FIRST_ATTEMPT.date()

    def listing(records: list[dict[str, Any]]) -> Any:
        return lambda text: records if "jid_" not in text else []

    def find(records: Any, project: str = "p") -> Any:
        return find_posted(records, "t [pc-1]", project=project, account="a", created_after=day)

    assert find(listing([])).outcome is Outcome.ABSENT
    # a record without metadata is an ordinary record: never a reason to refuse
    assert find(listing([{"jid": "00001", "title": "x"}])).outcome is Outcome.ABSENT
    ours = [
        {"jid": "00003", "title": "t [pc-1]", "project": "p"},
        {"jid": "00002", "title": "t [pc-1]", "project": "p"},
    ]
    found = find(listing(ours))
    assert found.outcome is Outcome.FOUND and found.job == ours[1]  # the oldest
    assert find(listing(ours), project="q").outcome is Outcome.ABSENT
    endless = find_posted(
        lambda text: (
            [{"jid": str(len(text)).zfill(5), "title": "x"}]
            if "gt" in text
            else [{"jid": "00001", "title": "x"}]
        ),
        "t [pc-1]",
        project="p",
        account="a",
        created_after=day,
        max_pages=3,
    )
    assert endless.outcome is Outcome.CANNOT_TELL


# a POST slower than the timeout ----------------------------------------------------------------


def test_a_post_that_times_out_is_found_by_looking_and_never_posted_again(
    tmp_path: Path,
) -> None:
    fake = FakeConductor()
    landed: list[dict[str, Any]] = []

    def slow(body: dict[str, Any]) -> Exception:
        landed.append(body)  # Conductor stores it ... after the client stopped waiting
        return httpx.ReadTimeout("timed out")

    def late(count: int) -> httpx.Response | None:
        if count == 3 and landed:  # the job shows on the third lookup after the POST
            fake.store(landed.pop())
        return None

    fake.on_post = slow
    fake.on_list = late
    with make(fake, tmp_path) as client:
        job = submit(client)
        again = submit(client)  # a retried step, or a rerun with the same key
    assert (job.jid, job.created, again.jid, again.created) == ("00001", False, "00001", False)
    assert len(fake.sent("POST", "/jobs/")) == 1 and len(fake.jobs) == 1


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (httpx.ReadTimeout("timed out"), "ReadTimeout"),
        (httpx.RemoteProtocolError("Server disconnected"), "RemoteProtocolError"),
        (httpx.Response(502), "HTTP 502"),
        (httpx.Response(504), "HTTP 504"),
        (httpx.Response(500), "HTTP 500"),
    ],
)
def test_an_ambiguous_post_not_found_in_time_fails_once_and_says_what_to_do(
    tmp_path: Path, answer: httpx.Response | Exception, said: str
) -> None:
    fake = FakeConductor()
    fake.on_post = lambda _body: answer
    with (
        make(fake, tmp_path, lookup_seconds=0) as client,
        pytest.raises(SubmissionUnresolved) as caught,
    ):
        submit(client)
    message = str(caught.value)
    assert f"job {TITLE!r}" in message and said in message
    assert "on the Conductor dashboard" in message and "new submission key" in message
    assert "\n" not in message and not is_transient(caught.value) and caught.value.exit_code == 3
    assert len(fake.sent("POST", "/jobs/")) == 1
    assert len(fake.sent("GET", "/api/v1/jobs")) == 1  # only after the POST


@pytest.mark.parametrize("status", [429, 503, 408])
def test_answers_that_say_not_taken_are_posted_again(tmp_path: Path, status: int) -> None:
    fake = FakeConductor()
    answers = [httpx.Response(status, headers={"Retry-After": "0"})]

    def first_refused(body: dict[str, Any]) -> httpx.Response:
        if answers:
            return answers.pop()
        job = fake.store(body)
        return httpx.Response(201, json={"jobid": job["jid"]})

    fake.on_post = first_refused
    with make(fake, tmp_path) as client:
        assert submit(client).created
    assert len(fake.sent("POST", "/jobs/")) == 2 and len(fake.jobs) == 1


def test_a_connect_error_is_posted_again_because_nothing_was_sent(tmp_path: Path) -> None:
    fake = FakeConductor()
    failures: list[Exception] = [httpx.ConnectError("refused")]

    def flaky(body: dict[str, Any]) -> httpx.Response | Exception:
        if failures:
            return failures.pop()
        return httpx.Response(201, json={"jobid": fake.store(body)["jid"]})

    fake.on_post = flaky
    with make(fake, tmp_path) as client:
        assert submit(client).jid == "00001"
    assert len(fake.jobs) == 1


def test_the_lookup_window_is_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_SUBMIT_LOOKUP_SECONDS", "42")
    monkeypatch.setenv("PREFECT_CONDUCTOR_SUBMISSION_LOOKBACK_DAYS", "3")
    client = ConductorClient(URL, ApiKey(CLIENT_ID, PRIVATE_KEY), token_cache_dir=tmp_path)
    with client:
        assert client.lookup_seconds == 42.0 and client.lookback_days == 3
