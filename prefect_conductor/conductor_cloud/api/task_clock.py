"""How long each task rendered, as seen from outside: Conductor's task records carry no times.

Every look at a job's task listing is handed to :meth:`TaskClock.observe` with the time of the
look. A task's start is the first look that saw it past ``pending``/``holding`` (or the look
before the first one that saw it finished, when it started and finished between two looks); its
end is the first look that saw it finished. A duration is therefore known to within the longest
gap between two looks, which the clock keeps as :attr:`TaskClock.resolution` so every figure
built on it can say how precise it is. A task already running (or finished) at the clock's very
first look started at some unknown time before it: its duration is only a lower bound, and
:meth:`TaskClock.timed` leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_conductor.conductor_cloud.api.status import TaskStatus

_NOT_STARTED = frozenset({TaskStatus.PENDING, TaskStatus.HOLDING, TaskStatus.UNKNOWN})


@dataclass
class TaskClock:
    """First-seen start and end of each task, in seconds since the epoch, and the gap between
    looks that bounds their error."""

    started: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    last_look: float | None = None
    resolution: float = 0.0
    unseen_start: set[str] = field(default_factory=set)
    """Tasks already started at the first look: their durations are lower bounds."""

    def observe(self, tasks: Iterable[tuple[str, TaskStatus]], now: float) -> None:
        """Record one look at the task listing, made at ``now``."""
        previous = self.last_look
        if previous is not None:
            self.resolution = max(self.resolution, now - previous)
        for tid, status in tasks:
            if status in _NOT_STARTED:
                continue
            if tid not in self.started:
                # Seen finished on the first look that saw it at all: it started after the
                # previous look (or, on the very first look, at some unknown time before it).
                started = now if not status.finished or previous is None else previous
                self.started[tid] = started
                if previous is None:
                    self.unseen_start.add(tid)
            if status.finished and tid not in self.ended:
                self.ended[tid] = now
        self.last_look = now

    def seconds(self, tid: str) -> float | None:
        """How long the task took, to within :attr:`resolution`; None until it has finished."""
        if tid not in self.ended or tid not in self.started:
            return None
        return max(0.0, self.ended[tid] - self.started[tid])

    def durations(self) -> dict[str, float]:
        """Every finished task's duration, by task id."""
        known = {tid: self.seconds(tid) for tid in self.ended}
        return {tid: seconds for tid, seconds in known.items() if seconds is not None}

    def timed(self) -> dict[str, float]:
        """The durations whose start and end both fell between two looks (to within
        :attr:`resolution`), by task id: what an estimate may build on."""
        return {t: s for t, s in self.durations().items() if t not in self.unseen_start}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy, for keeping the clock while the run waits without a process."""
        return {
            "started": dict(self.started),
            "ended": dict(self.ended),
            "last_look": self.last_look,
            "resolution": self.resolution,
            "unseen_start": sorted(self.unseen_start),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskClock:
        """The clock :meth:`to_dict` wrote; anything malformed reads as an empty clock."""
        try:
            return cls(
                started={str(k): float(v) for k, v in dict(data.get("started") or {}).items()},
                ended={str(k): float(v) for k, v in dict(data.get("ended") or {}).items()},
                last_look=None if data.get("last_look") is None else float(data["last_look"]),
                resolution=float(data.get("resolution") or 0.0),
                unseen_start={str(t) for t in data.get("unseen_start") or ()},
            )
        except (TypeError, ValueError, AttributeError):
            return cls()
