"""Job and task state: the one module that lists what we read from Conductor, and what we guess.

Evidenced (Conductor's own clients; docs/protocol.md names each source):

* ``GET api/v1/jobs?filter=jid_gt_A,jid_lt_B`` -> ``{"data": [job, ...]}`` (ciocore
  ``ApiClient.get_jobs``), jids 5-digit zero-padded strings.
* ``GET api/v1/jobs?filter=account_id_eq_<acct>,created_gt_<YYYY-MM-DD>`` -> ``{"data": [...]}``
  (the desktop client's job list); ``account`` is the JWT claim (ciocore
  ``account_id_from_jwt``).
* ``GET <api host>/api/v1/tasks?filter=jobLabel_eq_<jid>`` -> ``{"data": [task, ...]}`` with
  ``status``, ``taskLabel``, ``jobLabel`` and ``command`` (Conductor's Tractor bridge,
  ``conductor_poll.py`` and ``send_to_conductor.py``, on ``https://api.conductortech.com``);
  tids are 3-digit zero-padded strings.
* The status words in :class:`JobStatus` and :class:`TaskStatus` (Conductor's job-monitoring
  docs, the Tractor bridge, the old dashboard's mock records).

Assumed, and how a wrong guess fails safe:

* Listings are complete or truncated to a page; no paging parameter is known. The lookup after
  a POST of unknown outcome (``job_lookup.py``) walks further with ``jid_gt_``/``jid_lt_``
  bounds until a page comes back empty, and answers "cannot tell" (so nothing is posted) when a
  page ignores the bound or the walk exceeds its budget.
* Filters can be combined with commas (both clients do, each with its own parts). A server that
  ignores a part returns more records, never fewer; the client re-checks ``jid``, ``jobLabel``,
  the title and the project itself.
* A listed job shows its ``title`` and ``project`` as posted (the desktop client's ``fields=``).
  Only the lookup after a POST of unknown outcome relies on it; a fresh submission never lists.
* A task record's ``frames``: used only to name failed frames; the ``taskLabel`` stands in.
* Downloads (``task_downloads.py``): a downloads page may list tasks that cannot be downloaded
  yet; we ask the downloads listing only for the tids the task listing shows ``success`` or
  ``downloaded`` (``{"tids": [...]}``, as ciocore's ``JobDownloader`` sends), keep only records
  for those tids, download them as soon as they are seen (not once the whole job has finished),
  and report only those ``downloaded`` (with ``bytes_downloaded`` = the task's size,
  ``bytes_to_download`` = 0; ciocore sends 0 for both). A succeeded task the downloads listing
  does not hold yet is asked for again on the next look. ``POST downloads/status`` accepts with
  any 2xx (no client reads its answer).
* ``preempted`` is settled: a task or job left ``preempted`` is one whose Conductor retries
  (``autoretry_policy``) are spent and which waits for a person's "Retry Preempted" in the
  dashboard, so waits end on it and it counts as not rendered, like ``failed``. Were Conductor
  to list ``preempted`` between its own retries, a wait would end early and the run would name
  the task as not rendered; the re-render step re-reads the task listing before rendering a
  preempted task's frames again, so a task that Conductor retried meanwhile is not rendered
  twice.
* A status word not listed here parses to ``UNKNOWN``, which counts as "not finished": the scout
  wait then runs to its limit and names the word, instead of crashing or passing a failed scout.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

_Word = TypeVar("_Word", bound="StatusWord")

FINISHED_WORDS = frozenset({"success", "downloaded", "failed", "killed", "preempted"})
"""The states that will not change again without someone acting on the job or task."""

NOT_RENDERED_WORDS = frozenset({"failed", "killed", "preempted"})
"""The settled states of a task whose frames did not render."""


class StatusWord(str, Enum):  # noqa: UP042 (enum.StrEnum is 3.11+)
    """A status word as Conductor writes it (``enum.StrEnum`` as the host's Python 3.10 can run
    it: str() and format() give the value); the one parser for job and task states."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls: type[_Word], word: object) -> _Word:
        """The state a record's ``status`` names; never raises (unknown words are UNKNOWN)."""
        try:
            return cls(str(word).strip().lower())
        except ValueError:
            return cls("unknown")

    @property
    def finished(self) -> bool:
        """A job or task in this state will not change again without someone acting on it."""
        return self.value in FINISHED_WORDS


class TaskStatus(StatusWord):
    """The states of a Conductor task; ``UNKNOWN`` stands for any word not listed."""

    PENDING = "pending"
    HOLDING = "holding"
    RUNNING = "running"
    PREEMPTED = "preempted"
    SUCCESS = "success"
    DOWNLOADED = "downloaded"
    FAILED = "failed"
    KILLED = "killed"
    UNKNOWN = "unknown"

    @property
    def succeeded(self) -> bool:
        """Rendered: ``downloaded`` is a success whose frames a downloader already fetched."""
        return self in (TaskStatus.SUCCESS, TaskStatus.DOWNLOADED)

    @property
    def not_rendered(self) -> bool:
        """Settled without its frames: failed, killed or preempted (retries spent)."""
        return self.value in NOT_RENDERED_WORDS


class JobStatus(StatusWord):
    """The states of a whole job; ``UNKNOWN`` stands for any word not listed."""

    PENDING = "pending"
    SYNCING = "syncing"
    HOLDING = "holding"
    RUNNING = "running"
    PREEMPTED = "preempted"
    SUCCESS = "success"
    DOWNLOADED = "downloaded"
    FAILED = "failed"
    KILLED = "killed"
    UNKNOWN = "unknown"


def not_rendered_line(statuses: Iterable[TaskStatus]) -> str:
    """``2 task(s) did not render (1 failed, 1 preempted)``: killed tasks count as failed."""
    tally = {"failed": 0, "preempted": 0}
    for status in statuses:
        if status.not_rendered:
            tally["preempted" if status is TaskStatus.PREEMPTED else "failed"] += 1
    named = ", ".join(f"{count} {word}" for word, count in tally.items() if count)
    return f"{sum(tally.values())} task(s) did not render ({named or 'none'})"


def job_status_from_tasks(statuses: list[TaskStatus]) -> JobStatus:
    """Summarise task states the way the dashboard does: any failure fails, all success succeeds;
    settled tasks some of which stayed preempted (none failed) make a preempted job."""
    if not statuses:
        return JobStatus.SUCCESS
    if any(status is TaskStatus.KILLED for status in statuses):
        return JobStatus.KILLED
    if all(status.finished for status in statuses):
        if any(status is TaskStatus.FAILED for status in statuses):
            return JobStatus.FAILED
        if any(status is TaskStatus.PREEMPTED for status in statuses):
            return JobStatus.PREEMPTED
        if all(status is TaskStatus.DOWNLOADED for status in statuses):
            return JobStatus.DOWNLOADED
        return JobStatus.SUCCESS
    if any(status is TaskStatus.RUNNING for status in statuses):
        return JobStatus.RUNNING
    if all(status is TaskStatus.HOLDING for status in statuses if not status.finished):
        return JobStatus.HOLDING
    return JobStatus.PENDING


SUBMISSION_METADATA_KEY = "prefect_conductor_submission"
"""The metadata key carrying our submission id; the duplicate-job guard matches jobs on it."""
