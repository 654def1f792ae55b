"""One retry policy for every HTTP call the project makes (Conductor API, storage, Prefect API).

Retry what is transient and nothing else: transport failures (connect, read, write and pool
timeouts, refused or reset connections, a connection dropped mid-response) and the statuses 408,
425, 429, 500, 502, 503, 504. ``Retry-After`` (seconds or an HTTP date) is a floor for the wait,
capped by ``max_delay``; when even that capped floor does not fit in what is left of the total
``deadline``, we stop instead of asking again early. Otherwise the wait is tenacity's
``wait_random_exponential`` (:func:`jitter`, the project's one backoff formula), so many clients
hit by the same outage do not come back in step. Any other 4xx returns at
once: retrying a 400, 401 or 404 only hides the problem (the reference client retries them five
times). Tenacity drives the loop; Prefect retries sit above it for whole steps, so keep
``attempts`` small.

Nothing here imports Prefect: the host's trigger uses it inside the host application.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    wait_random_exponential,
)

UTC = timezone.utc  # noqa: UP017 (datetime.UTC is 3.11+; host_export runs on 3.10)

logger = logging.getLogger(__name__)

RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Statuses that say "try again later"; every other 4xx/5xx is final."""

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,  # connect, read, write and pool timeouts
    httpx.NetworkError,  # connect, read, write and close failures (refused, reset)
    httpx.RemoteProtocolError,  # the peer closed the connection mid-answer
)
"""Transport failures worth another try. Not included: a bad URL scheme, a proxy error or a
malformed request of our own (``UnsupportedProtocol``, ``ProxyError``, ``LocalProtocolError``),
which fail the same way every time."""

NEVER_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
"""Failures raised before any byte of the request left: safe to repeat even a non-idempotent
POST. Everything else in TRANSIENT_ERRORS may have reached the server."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one call: attempts, backoff bounds and a total deadline (seconds)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 120.0


@dataclass(frozen=True)
class RetryEvent:
    """What a retry callback is told: which attempt failed, why, and how long we now wait."""

    attempt: int
    reason: str
    wait: float


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` as seconds from now, or None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_retriable_response(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def is_transient_error(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


def jitter(policy: RetryPolicy, attempt: int) -> float:
    """Tenacity's full-jitter wait after failed ``attempt`` (1-based): the project's one formula.

    ``uniform(0, min(max_delay, base_delay * 2**(attempt-1)))``, so clients hit by the same outage
    do not come back in step.
    """
    state = RetryCallState(cast(Any, None), None, (), {})
    state.attempt_number = max(1, attempt)
    wait = wait_random_exponential(multiplier=policy.base_delay, max=policy.max_delay)
    return max(0.0, float(wait(state)))


def backoff_delay(
    policy: RetryPolicy,
    attempt: int,
    response: httpx.Response | None = None,
    remaining: float | None = None,
) -> float:
    """The wait after failed ``attempt`` (1-based): :func:`jitter`, ``Retry-After`` as a floor.

    A ``Retry-After`` on ``response`` raises the jittered wait to at least
    ``min(Retry-After, max_delay)``; the result never exceeds ``remaining`` (seconds left of the
    deadline) when that is given.
    """
    delay = jitter(policy, attempt)
    floor = retry_after_seconds(response) if response is not None else None
    if floor is not None:
        delay = max(delay, min(floor, policy.max_delay))
    if remaining is not None:
        delay = min(delay, max(0.0, remaining))
    return delay


def redacted_url(url: str | httpx.URL) -> str:
    """A URL fit for a log line or an error: no query (signatures, secrets) and no user info."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


def describe_failure(outcome: RetryCallState) -> str:
    """A short reason: the status, or the transport error's class. Never a URL or a body."""
    if outcome.outcome is None:
        return "unknown"
    if outcome.outcome.failed:
        return type(outcome.outcome.exception()).__name__
    response: httpx.Response = outcome.outcome.result()
    return f"HTTP {response.status_code}"


def send_with_retries(
    http: httpx.Client,
    request_factory: Callable[[], httpx.Request],
    policy: RetryPolicy,
    *,
    retry_on_transport: bool = True,
    on_retry: Callable[[RetryEvent], None] | None = None,
    auth: httpx.Auth | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """Send a request, retrying transient failures per ``policy``; return the final response.

    ``request_factory`` builds a fresh request for each attempt (a streamed body cannot be sent
    twice, and a caller may want a fresh token). The last response is returned even when it is a
    retriable status that ran out of attempts: the caller turns it into its own error. A transport
    error that runs out of attempts is re-raised as is. With ``retry_on_transport=False``
    transport errors are raised at once (for requests that must not be repeated blindly).
    Exceptions raised by ``request_factory`` itself are never retried. ``auth`` signs each
    attempt (see ``auth.BearerAuth``); ``sleep`` is injectable so tests wait for nothing.
    """
    started = time.monotonic()
    sent: list[httpx.Request] = []

    def remaining() -> float:
        return policy.deadline - (time.monotonic() - started)

    def attempt() -> httpx.Response:
        request = request_factory()
        sent[:] = [request]
        return http.send(request, auth=auth)

    def should_stop(state: RetryCallState) -> bool:
        if state.attempt_number >= max(1, policy.attempts) or remaining() <= 0:
            return True
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            floor = retry_after_seconds(outcome.result())
            # The server named a time; asking before it (cut short by the deadline) is futile.
            if floor is not None and min(floor, policy.max_delay) > remaining():
                return True
        return False

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        response = outcome.result() if outcome is not None and not outcome.failed else None
        if response is not None:
            response.close()
        delay = backoff_delay(policy, state.attempt_number, response, remaining())
        reason = describe_failure(state)
        if sent:
            logger.info(
                "retrying %s %s after %s (attempt %d of %d) in %.2f s",
                sent[0].method,
                redacted_url(sent[0].url),
                reason,
                state.attempt_number,
                policy.attempts,
                delay,
            )
        if on_retry is not None:
            on_retry(RetryEvent(state.attempt_number, reason, delay))
        return delay

    def transport_retriable(error: BaseException) -> bool:
        return retry_on_transport and is_transient_error(error)

    retrying = Retrying(
        stop=should_stop,
        wait=wait,
        retry=retry_if_exception(transport_retriable) | retry_if_result(is_retriable_response),
        retry_error_callback=_last_outcome,
        reraise=True,
        sleep=sleep,
    )
    response: httpx.Response = retrying(attempt)
    return response


def _last_outcome(state: RetryCallState) -> httpx.Response:
    """When attempts run out: return the last response, or re-raise the last transport error."""
    if state.outcome is None:  # tenacity always records one before stopping
        raise RuntimeError("retry loop stopped before any attempt")
    response: httpx.Response = state.outcome.result()
    return response
