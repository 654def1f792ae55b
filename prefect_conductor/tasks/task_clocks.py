"""Each job's task clock in Prefect's result storage: a run that waits suspended, or the watcher
that looks at its job, keeps what it saw there, and the resumed run reads it back.

One record per job id, under a key made from the id, read without Prefect's in-memory cache so a
clock another process wrote is seen at once (as ``post_records`` does for the duplicate guard).
"""

from __future__ import annotations

from typing import Any

from prefect.filesystems import NullFileSystem
from prefect.results import ResultStore, get_default_result_storage, get_result_store

from prefect_conductor.conductor_cloud.api.task_clock import TaskClock

KEY_PREFIX = "prefect-conductor-clock-"


def clock_key(jid: str) -> str:
    """The storage key of a job's clock (a job id is digits only, so a safe file name)."""
    if not (jid.isascii() and jid.isdigit()):
        raise ValueError(f"not a job id: {jid[:40]!r}")
    return f"{KEY_PREFIX}{jid}"


def record_store(store: ResultStore | None = None) -> ResultStore:
    """``store``, else the current run's result store, read without the in-memory cache; a run
    that persists no results (the watcher) writes to the default result storage instead."""
    base = store if store is not None else get_result_store()
    update: dict[str, Any] = {"cache_result_in_memory": False, "cache": {}}
    if base.result_storage is None or isinstance(base.result_storage, NullFileSystem):
        update["result_storage"] = get_default_result_storage()
    if isinstance(base.metadata_storage, NullFileSystem):
        update["metadata_storage"] = None  # the record is kept whole in the result storage
    return base.model_copy(update=update)


class ClockRecords:
    """Task clocks in the current run's result store (the default one outside a run)."""

    def __init__(self, store: ResultStore | None = None) -> None:
        self.store = record_store(store)

    def read(self, jid: str) -> TaskClock:
        """The job's clock as last written; an empty clock when none was."""
        key = clock_key(jid)
        if not self.store.exists(key):
            return TaskClock()
        value: Any = self.store.read(key).result
        if not isinstance(value, dict) or value.get("jid") != jid:
            return TaskClock()
        return TaskClock.from_dict(value)

    def write(self, jid: str, clock: TaskClock) -> None:
        self.store.write({"jid": jid, **clock.to_dict()}, key=clock_key(jid))
