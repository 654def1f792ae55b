"""The duplicate guard's records in Prefect's result storage, which every worker shares.

One record per submission id (``post_record.PostRecord``), under a key made from the id's hash,
written by the submit step itself: the title before the POST, the job id after it. Read without
Prefect's in-memory cache, so a record another process wrote is seen at once. The submit step
holds the submission lock (``submission_lock``) around read, POST and write, so two runs with one
id never both see "nothing posted".

Records live in the result storage of the run (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``, else the
local ``PREFECT_LOCAL_STORAGE_PATH``): several worker machines need a shared storage block, as
they already do for resumed runs.
"""

from __future__ import annotations

import hashlib
from typing import Any

from prefect.results import ResultStore, get_result_store

from prefect_conductor.conductor_cloud.api.post_record import PostRecord

KEY_PREFIX = "prefect-conductor-posted-"


def record_key(submission_id: str) -> str:
    """The storage key of a submission id's record: a hash, so any id is a safe file name."""
    return KEY_PREFIX + hashlib.sha256(submission_id.encode("utf-8")).hexdigest()[:40]


class PrefectPostRecords:
    """PostRecords in the current run's result store (the default one outside a run)."""

    def __init__(self, store: ResultStore | None = None) -> None:
        base = store if store is not None else get_result_store()
        self.store = base.model_copy(update={"cache_result_in_memory": False, "cache": {}})

    def read(self, submission_id: str) -> PostRecord | None:
        key = record_key(submission_id)
        if not self.store.exists(key):
            return None
        value: Any = self.store.read(key).result
        if not isinstance(value, dict) or value.get("submission_id") != submission_id:
            return None  # not ours (a hash collision in 160 bits, or a foreign file)
        if value.get("forgotten"):
            return None
        return PostRecord(
            submission_id=submission_id,
            title=str(value.get("title") or ""),
            jid=str(value.get("jid") or ""),
        )

    def write(self, record: PostRecord) -> None:
        value = {"submission_id": record.submission_id, "title": record.title, "jid": record.jid}
        self.store.write(value, key=record_key(record.submission_id))

    def forget(self, submission_id: str) -> None:
        # Result storage has no delete: an emptied record reads as "nothing posted".
        value = {"submission_id": submission_id, "title": "", "jid": "", "forgotten": True}
        self.store.write(value, key=record_key(submission_id))
