"""Render again only what failed: a new job holding a finished job's failed or preempted tasks.

No Conductor client shows a call that retries a task (only ``kill``), so a task that still ended
``failed`` or ``preempted`` after Conductor's own autoretry is rendered again as a new job, posted
like any other: the same command and frames for each such task, everything else as the first job
was posted. The new job's metadata names the first job (:data:`RERENDER_OF_KEY`) and the attempt
(:data:`RERENDER_ATTEMPT_KEY`); its submission id ``<key>:rerender-<n>`` goes through the same
duplicate guard.

Task ids are positions: task ``N`` of a job is ``tasks_data[N]`` of its payload, so a re-render
job's task ``N`` is the ``N``-th task chosen for it. :class:`Ledger` follows each task of the first
job through its attempts to its latest state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect_conductor.conductor_cloud.api.post_record import (
    TAG_DIGITS,
    TAG_PREFIX,
    submission_tag,
    tagged_title,
)
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY, TaskStatus
from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.job.frames import FrameList, parse_frame_spec
from prefect_conductor.conductor_cloud.transfers.job_outputs import TaskState

RERENDER_OF_KEY = "prefect_conductor_rerender_of"
"""Metadata: the job id of the job whose tasks this one renders again."""
RERENDER_ATTEMPT_KEY = "prefect_conductor_rerender_attempt"
"""Metadata: which attempt this job is (``"1"`` for the first re-render; values are strings)."""
RERENDER_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.PREEMPTED})
"""Task states rendered again; a killed task is not (someone stopped it on purpose)."""


def rerender_step(attempt: int) -> str:
    """The step name of an attempt, the end of its submission id: ``rerender-<n>``."""
    return f"rerender-{attempt}"


def to_rerender(states: Iterable[TaskState]) -> list[TaskState]:
    """The tasks that ended in a state rendered again, in task order."""
    return [s for s in states if s.status in RERENDER_STATUSES]


def still_to_rerender(chosen: Iterable[TaskState], fresh: Iterable[TaskState]) -> list[TaskState]:
    """Of ``chosen``, the tasks a fresh look at the listing still shows failed or preempted.

    A preempted task that Conductor took up again since the first look (running, pending, or
    rendered) is left to Conductor: posting it again would render it twice.
    """
    now = {s.tid: s for s in fresh}
    return [now[s.tid] for s in chosen if s.tid in now and now[s.tid].status in RERENDER_STATUSES]


def task_position(jid: str, tid: str, count: int) -> int:
    """Which ``tasks_data`` entry task ``tid`` of job ``jid`` is; ServiceError for a task id the
    job was not posted with (the listing names a task we never sent)."""
    if not (tid.isascii() and tid.isdigit() and len(tid) <= 6) or int(tid) >= count:
        raise ServiceError(
            f"job {jid}: the task listing names task {tid[:40]!r}, which the job was not posted"
            f" with ({count} tasks)"
        )
    return int(tid)


def untagged_title(title: str) -> str:
    """A posted title without its submission tag (``tagged_title`` in reverse)."""
    head, sep, tail = title.rpartition(f" [{TAG_PREFIX}")
    if sep and len(tail) == TAG_DIGITS + 1 and tail.endswith("]"):
        return head
    return title


def rerender_payload(
    posted: Mapping[str, Any],
    positions: Sequence[int],
    *,
    attempt: int,
    first_jid: str,
    submission_id: str,
    on_demand: bool,
) -> dict[str, Any]:
    """The body of ``POST jobs/`` for attempt ``attempt``: the tasks at ``positions`` of the
    first job's posted body, no scout frames, and non-preemptible machines when ``on_demand``.

    Upload files, packages, environment, output path and instance type are as posted; the title
    says the attempt and carries this submission's tag; the metadata names the first job.
    """
    tasks = list(posted.get("tasks_data") or ())
    if not positions or any(not 0 <= p < len(tasks) for p in positions):
        raise ValueError(
            f"positions {list(positions)} do not name tasks of a {len(tasks)}-task job"
        )
    chosen = [dict(tasks[p]) for p in positions]
    body = dict(posted)
    body["tasks_data"] = chosen
    body["scout_frames"] = ""
    if on_demand:
        body["preemptible"] = False
        body["autoretry_policy"] = {}  # sent only for preemptible machines, as ciocore does
    base = untagged_title(str(posted.get("job_title") or ""))
    body["job_title"] = tagged_title(f"{base} [re-render {attempt}]", submission_tag(submission_id))
    body["metadata"] = {
        **dict(posted.get("metadata") or {}),
        RERENDER_OF_KEY: first_jid,
        RERENDER_ATTEMPT_KEY: str(attempt),
        SUBMISSION_METADATA_KEY: submission_id,
    }
    return body


def rerender_labels(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``{"attempt": n, "first_jid": jid}`` for a re-render job's events; empty for others."""
    metadata = payload.get("metadata") or {}
    first = str(metadata.get(RERENDER_OF_KEY) or "")
    attempt = str(metadata.get(RERENDER_ATTEMPT_KEY) or "")
    if not (first and attempt.isdigit()):
        return {}
    return {"attempt": int(attempt), "first_jid": first}


def frames_of(states: Iterable[TaskState]) -> FrameList:
    """Every frame the tasks hold (a spec that does not read adds none)."""
    frames: list[int] = []
    for state in states:
        try:
            frames.extend(parse_frame_spec(state.frames, field="frames"))
        except ValueError:
            continue
    return FrameList.from_iterable(frames)


@dataclass(frozen=True)
class Attempt:
    """One job of a render: the first (attempt 0) or a re-render, and how its tasks ended."""

    attempt: int
    jid: str
    states: tuple[TaskState, ...]
    seconds: Mapping[str, float] = field(default_factory=dict)
    """Each task's rendering time where the task clock knows it."""

    @property
    def instance_hours(self) -> float | None:
        """Hours on render machines (one per task), when every task's time is known."""
        if not self.states or any(s.tid not in self.seconds for s in self.states):
            return None
        return sum(self.seconds[s.tid] for s in self.states) / 3600.0

    @property
    def outcome(self) -> str:
        """``rendered`` or ``3 of 4 rendered; preempted: 5-6``."""
        done = sum(1 for s in self.states if s.status.succeeded)
        if done == len(self.states):
            return "rendered"
        by_word: dict[str, list[TaskState]] = {}
        for state in self.states:
            if not state.status.succeeded:
                by_word.setdefault(state.word or str(state.status), []).append(state)
        parts = [f"{word}: {frames_of(group) or len(group)}" for word, group in by_word.items()]
        return f"{done} of {len(self.states)} rendered; " + "; ".join(parts)

    def row(self) -> dict[str, str]:
        """The attempts table's row: job, attempt, frames, outcome, instance-hours."""
        hours = self.instance_hours
        return {
            "job": self.jid,
            "attempt": "first" if self.attempt == 0 else f"re-render {self.attempt}",
            "frames": str(frames_of(self.states)),
            "outcome": self.outcome,
            "instance_hours": "" if hours is None else f"{hours:.3f}",
        }


@dataclass
class Ledger:
    """Each task of the first job, through its attempts, to the state it ended in last."""

    first_jid: str
    task_count: int
    latest: dict[int, tuple[str, TaskState]] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)

    def record(
        self,
        jid: str,
        states: Sequence[TaskState],
        positions: Sequence[int],
        seconds: Mapping[str, float] | None = None,
    ) -> None:
        """Job ``jid`` rendered ``positions`` of the first job, its task ``N`` being
        ``positions[N]``; its listed ``states`` become those tasks' latest. A job recorded again
        (followed once more) replaces its own attempt."""
        for state in states:
            position = positions[task_position(jid, state.tid, len(positions))]
            self.latest[position] = (jid, state)
        if self.attempts and self.attempts[-1].jid == jid:
            self.attempts.pop()
        self.attempts.append(Attempt(len(self.attempts), jid, tuple(states), dict(seconds or {})))

    def positions_to_rerender(self) -> list[int]:
        """The first job's tasks whose latest state is one rendered again."""
        return [p for p, (_, s) in sorted(self.latest.items()) if s.status in RERENDER_STATUSES]

    def unrendered(self) -> list[tuple[str, TaskState]]:
        """``(job, task)`` for every task of the first job not rendered in its latest attempt."""
        return [(j, s) for _, (j, s) in sorted(self.latest.items()) if not s.status.succeeded]

    def latest_states(self) -> list[TaskState]:
        """Each task's latest state, in the first job's order: what the frame check reads."""
        return [s for _, (_, s) in sorted(self.latest.items())]

    def failure_line(self) -> str:
        """One line: the frames no attempt rendered, the jobs tried, where the log tails are."""
        bad = self.unrendered()
        frames = frames_of(s for _, s in bad)
        named = f"frames {frames}" if frames else "tasks " + ", ".join(s.tid for _, s in bad)
        jobs = ", ".join(a.jid for a in self.attempts)
        last = ", ".join(f"{s.word or s.status} in job {j} task {s.tid}" for j, s in bad)
        tries = len(self.attempts)
        return (
            f"{named} did not render in {tries} attempt{'s' if tries != 1 else ''} (jobs {jobs};"
            f" last: {last}); each task's log tail is in the run's logs"
        )
