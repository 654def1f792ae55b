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
from contextlib import contextmanager

from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.tasks.conductor_limits import LEASE_SECONDS, held_slot

LOCK_PREFIX = "prefect-conductor-submit-"


class SubmissionLockError(ServiceError):
    """The submission lock could not be taken; running the step again is safe."""

    transient = True


def lock_name(submission_id: str, buckets: int) -> str:
    """The concurrency limit guarding ``submission_id``: a stable hash onto ``buckets`` names."""
    digest = hashlib.sha256(submission_id.encode("utf-8")).digest()
    return f"{LOCK_PREFIX}{int.from_bytes(digest[:8], 'big') % max(1, buckets)}"


@contextmanager
def submission_lock(submission_id: str) -> Iterator[str]:
    """Hold the Prefect lock for ``submission_id`` (yields its name) for the enclosed block."""
    settings = get_settings()
    name = lock_name(submission_id, settings.submit_lock_buckets)
    with held_slot(
        name,
        1,
        settings.submit_lock_wait_seconds,
        busy_hint=f"another run with the same key is posting; a dead holder's lease ends within"
        f" {LEASE_SECONDS:g} s on a server; on a restarted local backend free it with"
        f" `prefect gcl update {name} --active-slots 0`",
        error=SubmissionLockError,
        subject=f"submission {submission_id!r}: ",
    ) as held:
        yield held
