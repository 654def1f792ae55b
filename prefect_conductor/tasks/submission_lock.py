"""One holder at a time for a submission id, across processes and machines, held by Prefect.

The client looks a submission id up before posting, but lookup-then-post is not atomic and
Conductor has no idempotency key: two runs with the same submission key that both look before
either posts both post (four concurrent runs with a one-second ``POST jobs/`` made three jobs).
So the lookup and the post run under a lock that every worker shares: a Prefect global concurrency
limit of 1, the server being the one thing all workers already talk to. A local file lock would
only serialise one machine.

- The limit is taken with a lease (``lease_duration``, renewed while held): if the holder dies, the
  server's repossessor frees the slot once the lease runs out, so a crashed run never blocks the
  key for good. Leases live in the server process (Prefect's default lease storage is in memory):
  a server restarted while a slot was held, or a local ephemeral backend that died with its run,
  leaves the slot taken; the waiting run then fails after ``submit_lock_wait_seconds`` with one
  line saying how to free it.
- ``strict=True``: a missing limit is an error, never a silent pass-through (Prefect's default is
  to run unlocked when the limit does not exist). The limit is created on demand.
- Limits are not made per submission id (they would pile up, and deleting one while another run
  waits on it would break the exclusion): the id is hashed onto ``submit_lock_buckets`` limits
  named ``prefect-conductor-submit-<n>``. Two ids sharing a bucket only wait for each other's
  lookup and post, a second or so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency._asyncio import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.settings import get_settings

LOCK_PREFIX = "prefect-conductor-submit-"
LEASE_SECONDS = 60.0
"""The server's shortest lease; the holder renews it while it holds the slot."""


class SubmissionLockError(ServiceError):
    """The submission lock could not be taken; running the step again is safe."""

    transient = True


def lock_name(submission_id: str, buckets: int) -> str:
    """The concurrency limit guarding ``submission_id``: a stable hash onto ``buckets`` names."""
    digest = hashlib.sha256(submission_id.encode("utf-8")).digest()
    return f"{LOCK_PREFIX}{int.from_bytes(digest[:8], 'big') % max(1, buckets)}"


def ensure_lock(name: str) -> None:
    """Create the limit (1 slot, active) if missing; put it back to 1 slot if someone changed it."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # Another run may create it first: the same limit, so that is fine.
            with suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1, active=True)
                )
            return
        if existing.limit != 1 or not existing.active or existing.slot_decay_per_second:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=1, active=True, slot_decay_per_second=0)
            )


@contextmanager
def submission_lock(submission_id: str) -> Iterator[str]:
    """Hold the Prefect lock for ``submission_id`` (yields its name) for the enclosed block."""
    settings = get_settings()
    name = lock_name(submission_id, settings.submit_lock_buckets)
    wait = settings.submit_lock_wait_seconds
    stack = ExitStack()
    try:
        ensure_lock(name)
        stack.enter_context(
            concurrency(
                name, occupy=1, strict=True, lease_duration=LEASE_SECONDS, timeout_seconds=wait
            )
        )
    except AcquireConcurrencySlotTimeoutError:
        raise SubmissionLockError(
            f"submission {submission_id!r}: Prefect concurrency limit {name} stayed taken for"
            f" {wait:g} s: another run with the same key is posting (a dead holder's lease ends"
            f" within {LEASE_SECONDS:g} s on a server; on a restarted local backend free it with"
            f" `prefect gcl update {name} --active-slots 0`)"
        ) from None
    except ConcurrencySlotAcquisitionError as error:
        raise SubmissionLockError(
            f"submission {submission_id!r}: cannot take Prefect concurrency limit {name}: {error}"
        ) from None
    with stack:
        yield name
