"""Conductor's limits, held across every worker: Prefect global concurrency limits.

A studio runs many workers on many machines, and each would otherwise post jobs and upload files
as fast as its runs arrive; Conductor answers a burst with 429s and the studio's uplink saturates.
Two Prefect global concurrency limits bound that for the whole studio, because the Prefect server
is the one thing every worker already talks to (a local lock would bound one machine only):

- ``job_post_limit_name`` (``job_post_limit`` slots, default 4) around each job's lookup and
  ``POST jobs/``;
- ``upload_limit_name`` (``upload_limit`` slots, default 8) around each run's uploads (one slot
  per run: the run's own parallel transfers stay as the upload code sets them).

The limits are created on first use with the size the settings give, and put back to that size
if someone changed it, so the workers' environment is the one place the size is set (give every
worker the same values). Slots are leased and renewed while held: a worker killed mid-post frees
its slot within ``LEASE_SECONDS`` through the server's repossessor. ``strict=True``: a limit that
cannot be taken is an error, never a silent unbounded run. A run that waits longer than
``limit_wait_seconds`` fails its step with one line; the step's retries then wait again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Literal

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.asyncio import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.settings import get_settings

LEASE_SECONDS = 60.0
"""The server's shortest lease; the holder renews it while it holds the slot."""

Kind = Literal["job-post", "upload"]


class ConductorLimitError(ServiceError):
    """A studio-wide slot could not be taken in time; running the step again is safe."""

    transient = True


def limit_for(kind: Kind) -> tuple[str, int]:
    """The limit's name and size for ``kind``, from the settings."""
    settings = get_settings()
    if kind == "job-post":
        return settings.job_post_limit_name, settings.job_post_limit
    return settings.upload_limit_name, settings.upload_limit


def ensure_limit(name: str, size: int) -> None:
    """Create the limit (``size`` slots, active) if missing; put it back to ``size`` if changed."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # Another worker may create it first: the same limit, so that is fine.
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=size, active=True)
                )
            return
        if existing.limit != size or not existing.active or existing.slot_decay_per_second:
            client.update_global_concurrency_limit(
                name,
                GlobalConcurrencyLimitUpdate(limit=size, active=True, slot_decay_per_second=0),
            )


@contextmanager
def held_slot(
    name: str,
    size: int,
    wait_seconds: float,
    *,
    busy_hint: str,
    error: type[ServiceError] = ConductorLimitError,
    subject: str = "",
) -> Iterator[str]:
    """Hold one leased slot of the Prefect limit ``name`` (made ``size`` slots) for the block.

    The one way this project takes a studio-wide slot. ``error`` (one line, starting with
    ``subject``) is raised when the slot stays taken for ``wait_seconds`` (``busy_hint`` says what
    to do) or cannot be taken at all.
    """
    stack = ExitStack()
    try:
        ensure_limit(name, size)
        stack.enter_context(
            concurrency(
                name,
                occupy=1,
                strict=True,
                lease_duration=LEASE_SECONDS,
                timeout_seconds=wait_seconds,
            )
        )
    except AcquireConcurrencySlotTimeoutError:
        slots = "" if size == 1 else f": all {size} slots"
        raise error(
            f"{subject}Prefect concurrency limit {name}{slots} stayed taken for"
            f" {wait_seconds:g} s ({busy_hint})"
        ) from None
    except ConcurrencySlotAcquisitionError as problem:
        raise error(f"{subject}cannot take Prefect concurrency limit {name}: {problem}") from None
    with stack:
        yield name


@contextmanager
def conductor_slot(kind: Kind) -> Iterator[str]:
    """Hold one slot of the studio-wide ``kind`` limit (yields its name) for the enclosed block."""
    name, size = limit_for(kind)
    with held_slot(
        name,
        size,
        get_settings().limit_wait_seconds,
        busy_hint="other runs are using them; raise the limit or"
        " PREFECT_CONDUCTOR_LIMIT_WAIT_SECONDS",
    ) as held:
        yield held
