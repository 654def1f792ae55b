"""What was posted for a submission id, as the duplicate guard keeps it; no storage here.

The guard writes a record in the same step as the POST: the job title (with its submission tag)
before the POST, the job id after it. A record with a job id answers "already posted" without
asking Conductor; a record without one is a POST whose outcome is unknown, the only case in
which Conductor is asked. Where the records live is the caller's choice: Prefect's result
storage for the flows (shared by every worker), memory for a single client.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Protocol

TAG_PREFIX = "pc-"
TAG_DIGITS = 10
"""Hex digits of the submission tag: 40 bits, so two submissions within the guard's look-back
window of one account share a tag with a chance far below one in a million."""


def submission_tag(submission_id: str) -> str:
    """The short tag in a job's title that makes the job findable by its submission id."""
    digest = hashlib.sha256(submission_id.encode("utf-8")).hexdigest()
    return f"{TAG_PREFIX}{digest[:TAG_DIGITS]}"


def tagged_title(title: str, tag: str) -> str:
    """``title`` with the submission tag at its end, in brackets."""
    return f"{title} [{tag}]"


@dataclass(frozen=True)
class PostRecord:
    """The job title posted for a submission id, and the job id once Conductor named it."""

    submission_id: str
    title: str
    jid: str = ""

    def posted(self, jid: str) -> PostRecord:
        return replace(self, jid=jid)


class PostRecords(Protocol):
    """Where the guard keeps its records; every process posting the same ids must share it."""

    def read(self, submission_id: str) -> PostRecord | None: ...

    def write(self, record: PostRecord) -> None: ...

    def forget(self, submission_id: str) -> None:
        """Drop the record of a POST that Conductor certainly refused."""
        ...


class MemoryPostRecords:
    """Records held by one process: enough for one client, no guard across processes."""

    def __init__(self) -> None:
        self._records: dict[str, PostRecord] = {}

    def read(self, submission_id: str) -> PostRecord | None:
        return self._records.get(submission_id)

    def write(self, record: PostRecord) -> None:
        self._records[record.submission_id] = record

    def forget(self, submission_id: str) -> None:
        self._records.pop(submission_id, None)
