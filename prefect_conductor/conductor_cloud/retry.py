"""One retry policy for every HTTP call the project makes (Conductor API, storage, Prefect API).

Retry what is transient and nothing else: transport errors (connect, read, write and pool
timeouts, connections dropped mid-response) and the statuses 408, 425, 429, 500, 502, 503, 504.
``Retry-After`` (seconds or an HTTP date) is a floor for the wait, capped by ``max_delay`` and by
what is left of the total ``deadline``; otherwise the wait is exponential with full jitter. Any
other 4xx returns at once: retrying a 400, 401 or 404 only hides the problem (the reference
client retries them five times). Tenacity drives the loop; Prefect retries sit above it for whole
steps, so keep ``attempts`` small.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
)

RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one call: attempts, backoff bounds and a total deadline (seconds)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    deadline: float = 120.0


@dataclass(frozen=True)
class RetryEvent:
    """What a retry callback is told: which attempt failed, why, and how long we wait."""

    attempt: int
    reason: str
    wait: float


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's ``Retry-After`` as seconds from now, or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_retriable_response(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


def describe(outcome: RetryCallState) -> str:
    """A short reason for logs: the status, or the transport error's class (never a URL query)."""
    if outcome.outcome is None:
        return "unknown"
    if outcome.outcome.failed:
        error = outcome.outcome.exception()
        return type(error).__name__
    response = outcome.outcome.result()
    return f"HTTP {response.status_code}"


def send_with_retries(
    http: httpx.Client,
    request_factory: Callable[[], httpx.Request],
    policy: RetryPolicy,
    *,
    retry_on_transport: bool = True,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> httpx.Response:
    """Send a request, retrying transient failures per ``policy``; return the final response.

    ``request_factory`` builds a fresh request for each attempt (streamed bodies cannot be sent
    twice). The last response is returned even when it is a retriable status that ran out of
    attempts; the caller turns it into an error. A transport error that runs out of attempts is
    re-raised. With ``retry_on_transport=False`` transport errors are raised at once (used for
    requests that must not be repeated blindly, such as posting a job).
    """
    started = time.monotonic()

    def wait(state: RetryCallState) -> float:
        exponential = min(policy.max_delay, policy.base_delay * 2 ** (state.attempt_number - 1))
        delay = random.uniform(0, exponential)
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            floor = retry_after_seconds(outcome.result())
            if floor is not None:
                delay = max(delay, min(floor, policy.max_delay))
        remaining = policy.deadline - (time.monotonic() - started)
        delay = max(0.0, min(delay, remaining))
        if on_retry is not None:
            on_retry(RetryEvent(state.attempt_number, describe(state), delay))
        return delay

    def transport_retriable(error: BaseException) -> bool:
        return retry_on_transport and isinstance(error, TRANSPORT_ERRORS)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, policy.attempts)) | stop_after_delay(policy.deadline),
        wait=wait,
        retry=retry_if_exception(transport_retriable) | retry_if_result(is_retriable_response),
        retry_error_callback=_last_outcome,
        reraise=True,
    )
    response: httpx.Response = retrying(lambda: http.send(request_factory()))
    return response


def _last_outcome(state: RetryCallState) -> httpx.Response:
    """When attempts run out: return the last response, or re-raise the last transport error."""
    assert state.outcome is not None
    response: httpx.Response = state.outcome.result()
    return response
