"""The retry policy on its own, over httpx.MockTransport: no sockets, no real sleeps."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.retry import (
    NEVER_SENT_ERRORS,
    RetryPolicy,
    backoff_delay,
    jitter,
    send_with_retries,
)

POLICY = RetryPolicy(attempts=4, base_delay=0.5, max_delay=4.0, deadline=60)
URL = "https://dashboard.example.test/api/v1/projects/"


def scripted(answers: list[httpx.Response | Exception]) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose transport plays ``answers`` in order and records every request."""
    seen: list[httpx.Request] = []
    queue: Iterator[httpx.Response | Exception] = iter(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = next(queue)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def factory(http: httpx.Client) -> Callable[[], httpx.Request]:
    return lambda: http.build_request("GET", URL)


def test_jitter_is_tenacitys_full_jitter_exponential(monkeypatch: pytest.MonkeyPatch) -> None:
    ceilings: list[float] = []
    monkeypatch.setattr(random, "uniform", lambda low, high: ceilings.append(high) or high)
    assert [jitter(POLICY, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert jitter(POLICY, 3) == 0.0


def test_retry_after_is_a_capped_floor_and_the_deadline_a_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    asks_3 = httpx.Response(429, headers={"Retry-After": "3"})
    asks_99 = httpx.Response(429, headers={"Retry-After": "99"})
    assert backoff_delay(POLICY, 1, asks_3) == 3.0
    assert backoff_delay(POLICY, 1, asks_99) == POLICY.max_delay
    assert backoff_delay(POLICY, 1, asks_3, remaining=1.25) == 1.25
    assert backoff_delay(POLICY, 1, None) == 0.0


def test_transient_statuses_are_retried_with_the_servers_wait() -> None:
    http, seen = scripted(
        [
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(502),
            httpx.Response(200, json={"data": []}),
        ]
    )
    slept: list[float] = []
    response = send_with_retries(http, factory(http), POLICY, sleep=slept.append)
    assert response.status_code == 200 and len(seen) == 3
    assert slept[0] >= 2.0 and len(slept) == 2 and all(s <= POLICY.max_delay for s in slept)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_other_4xx_are_returned_at_once(status: int) -> None:
    http, seen = scripted([httpx.Response(status)])
    slept: list[float] = []
    assert send_with_retries(http, factory(http), POLICY, sleep=slept.append).status_code == status
    assert len(seen) == 1 and slept == []


def test_attempts_run_out_on_the_last_answer() -> None:
    http, seen = scripted([httpx.Response(500)] * POLICY.attempts)
    response = send_with_retries(http, factory(http), POLICY, sleep=lambda _s: None)
    assert response.status_code == 500 and len(seen) == POLICY.attempts


def test_a_retry_after_past_the_deadline_stops_at_once() -> None:
    http, seen = scripted([httpx.Response(503, headers={"Retry-After": "30"})])
    short = RetryPolicy(attempts=5, base_delay=0.5, max_delay=60, deadline=10)
    slept: list[float] = []
    assert send_with_retries(http, factory(http), short, sleep=slept.append).status_code == 503
    assert len(seen) == 1 and slept == []


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_transport_errors_retried_unless_told_not_to(error: Exception) -> None:
    http, seen = scripted([error, httpx.Response(200)])
    assert send_with_retries(http, factory(http), POLICY, sleep=lambda _s: None).is_success
    assert len(seen) == 2
    http, seen = scripted([error])
    with pytest.raises(type(error)):
        send_with_retries(
            http, factory(http), POLICY, retry_on_transport=False, sleep=lambda _s: None
        )
    assert len(seen) == 1


def test_never_sent_errors_are_exactly_those_raised_before_a_byte_left() -> None:
    assert set(NEVER_SENT_ERRORS) == {httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout}
    for maybe_sent in (httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError):
        assert not issubclass(maybe_sent, NEVER_SENT_ERRORS)


def test_each_attempt_is_a_fresh_request_signed_by_the_auth() -> None:
    class Count(httpx.Auth):
        calls = 0

        def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
            Count.calls += 1
            request.headers["Authorization"] = f"Bearer t{Count.calls}"
            yield request

    http, seen = scripted([httpx.Response(500), httpx.Response(200)])
    send_with_retries(http, factory(http), POLICY, auth=Count(), sleep=lambda _s: None)
    assert [r.headers["Authorization"] for r in seen] == ["Bearer t1", "Bearer t2"]
    assert seen[0] is not seen[1]
