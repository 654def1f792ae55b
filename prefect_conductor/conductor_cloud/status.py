"""Job and task status shapes: the one place that states what we assume Conductor returns.

The public client library shows no job- or task-status endpoint beyond the job listing
(``GET api/v1/jobs?filter=jid_gt_A,jid_lt_B``) and a task log's ``task_status``. We assume, and the
sandbox implements:

* ``GET api/v1/jobs?filter=jid_gt_A,jid_lt_B`` -> ``{"data": [job, ...]}``; the same endpoint
  also takes ``filter=metadata.<key>=eq:<value>`` (the instance-type filter grammar). The client
  always re-checks the metadata itself, so a server that ignores that filter is still safe.
* ``GET api/v1/jobs/<jid>`` -> ``{"data": job}``.
* ``GET api/v1/jobs/<jid>/tasks`` -> ``{"data": [task, ...]}``.
* ``job``: ``{"jid": "00042", "job_title", "project", "status", "metadata": {..}, "created_at",
  "task_count", "scout_frames"}``; ``task``: ``{"tid": "000", "frames": "1-2", "status",
  "command"}``.
* ``status`` values below. ``holding`` is a task Conductor keeps back in its native scout mode.
"""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):  # noqa: UP042 (enum.StrEnum is 3.11+)
    """``enum.StrEnum`` (3.11+) as the host's Python 3.10 can run it: str() and format() give
    the value, as Conductor writes it."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class TaskStatus(StrEnum):
    """The states a Conductor task passes through."""

    PENDING = "pending"
    HOLDING = "holding"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    PREEMPTED = "preempted"
    KILLED = "killed"

    @property
    def finished(self) -> bool:
        """A task in this state will not change again without someone acting on it."""
        return self in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.KILLED)


class JobStatus(StrEnum):
    """The states of a whole job, derived from its tasks."""

    PENDING = "pending"
    HOLDING = "holding"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def finished(self) -> bool:
        """A job in this state will not change again without someone acting on it."""
        return self in (JobStatus.SUCCESS, JobStatus.FAILED, JobStatus.KILLED)


def job_status_from_tasks(statuses: list[TaskStatus]) -> JobStatus:
    """Summarise task states the way the dashboard does: any failure fails, all success succeeds."""
    if not statuses:
        return JobStatus.SUCCESS
    if any(status is TaskStatus.KILLED for status in statuses):
        return JobStatus.KILLED
    if all(status.finished for status in statuses):
        if any(status is TaskStatus.FAILED for status in statuses):
            return JobStatus.FAILED
        return JobStatus.SUCCESS
    if any(status in (TaskStatus.RUNNING, TaskStatus.PREEMPTED) for status in statuses):
        return JobStatus.RUNNING
    if all(status is TaskStatus.HOLDING for status in statuses if not status.finished):
        return JobStatus.HOLDING
    return JobStatus.PENDING


SUBMISSION_METADATA_KEY = "prefect_conductor_submission"
"""The metadata key carrying our submission id; the duplicate-job guard looks jobs up by it."""
