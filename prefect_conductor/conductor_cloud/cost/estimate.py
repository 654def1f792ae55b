"""The full job's cost, estimated from how long the scout tasks took.

The scouts render a few tasks of the same job on the same machines, so their time per frame is
the best guess for the rest. Conductor's task records carry no times (the evidence shows none),
so the durations come from the run's looks at the task listing (``api/task_clock.py``), each
known to within the clock's resolution, the longest gap between two looks; the estimate states
it and the relative error it allows.

- **per frame-tile**: the scouts' summed durations over their summed frames (a tiled task renders
  one tile of each of its frames, so this is the time of one frame of one tile);
- **instance-hours**: per frame-tile time times the frames of each full-job task, summed;
- **wall time**: the tasks in order on ``max_instances`` machines (0: one machine per task), each
  starting when a machine is free;
- **cost**: instance-hours times the instance type's price per hour, preemptible or on demand, in
  the prices' currency.

Queueing, machine start-up outside a task and preemption retries are not in it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from prefect_conductor.conductor_cloud.cost.prices import Price

FRAME_TIME_PREFIX = "conductor-frame-time-"
"""Prefect Variables named this plus a hash of project and title keep a shot's measured frame
time, so a later ``preview`` of the same shot can estimate before anything is sent."""


def frame_time_variable(project: str, title: str) -> str:
    """The Variable name of a shot's measured frame time (lower-case hex: a valid name)."""
    digest = hashlib.sha256(f"{project}\n{title}".encode()).hexdigest()[:16]
    return f"{FRAME_TIME_PREFIX}{digest}"


@dataclass(frozen=True)
class Estimate:
    """The full job's estimated instance-hours, wall time and cost, and how they were made."""

    instance_type: str
    preemptible: bool
    tasks: int
    frame_tiles: int
    frame_tile_seconds: float | None = None
    instance_hours: float | None = None
    wall_seconds: float | None = None
    hourly: float | None = None
    cost: float | None = None
    resolution_seconds: float | None = None
    relative_error: float | None = None
    measured_tasks: int = 0
    source: str = "scouts"
    note: str = ""
    """Why a figure is missing (no timing, no price), in one line; empty when all are there."""

    @property
    def timed(self) -> bool:
        return self.instance_hours is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})

    def line(self) -> str:
        """One line for logs, the preview and the approval form."""
        if not self.timed:
            return f"Estimate: no timing ({self.note or 'no scout task times'})"
        parts = [
            f"{self.instance_hours:.2f} instance-hours",
            f"about {_duration(self.wall_seconds or 0.0)} wall time",
        ]
        if self.cost is not None:
            parts.append(f"cost {self.cost:.2f} in the prices' currency")
        text = f"Estimate: {', '.join(parts)} for {self.tasks} tasks on {self.instance_type}"
        if self.relative_error is not None and self.resolution_seconds is not None:
            text += (
                f" (task times to within {self.resolution_seconds:.1f} s,"
                f" about ±{self.relative_error * 100:.0f}%)"
            )
        if self.note:
            text += f"; {self.note}"
        return text

    def markdown(self) -> str:
        """The estimate as the run's artifact shows it."""
        rows = [
            ("Tasks in the full job", str(self.tasks)),
            ("Frames x tiles", str(self.frame_tiles)),
            ("Instance type", f"{self.instance_type} ({_machines(self.preemptible)})"),
            ("Time per frame-tile", _or_none(self.frame_tile_seconds, "{:.2f} s")),
            ("Instance-hours", _or_none(self.instance_hours, "{:.3f}")),
            ("Wall time", _or_none(self.wall_seconds, "", _duration)),
            ("Price per hour", _or_none(self.hourly, "{:.4f}")),
            ("Cost (in the prices' currency)", _or_none(self.cost, "{:.2f}")),
            ("Measured from", f"{self.measured_tasks} {self.source} task(s)"),
            (
                "Resolution",
                _or_none(self.resolution_seconds, "{:.1f} s per task time (the gap between looks)"),
            ),
            ("Relative error", _or_none(self.relative_error, "", lambda v: f"±{v * 100:.0f}%")),
        ]
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        text = f"# Full job estimate\n\n| | |\n|---|---|\n{table}\n"
        if self.note:
            text += f"\n{self.note}\n"
        return text


def _machines(preemptible: bool) -> str:
    return "preemptible" if preemptible else "on demand"


def _or_none(value: float | None, pattern: str, render: Any = None) -> str:
    if value is None:
        return "unknown"
    return str(render(value)) if render else pattern.format(value)


def _duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def wall_seconds(task_seconds: Sequence[float], max_instances: int) -> float:
    """How long ``task_seconds`` take in order on ``max_instances`` machines (0: unlimited)."""
    if not task_seconds:
        return 0.0
    machines = len(task_seconds) if max_instances <= 0 else min(max_instances, len(task_seconds))
    free = [0.0] * machines
    for seconds in task_seconds:
        start = heapq.heappop(free)
        heapq.heappush(free, start + seconds)
    return max(free)


def per_frame_tile(
    durations: Mapping[str, float], frames: Mapping[str, int]
) -> tuple[float, int] | None:
    """Seconds per frame-tile over the measured tasks, and how many tasks; None without any."""
    measured = [(durations[tid], frames[tid]) for tid in durations if frames.get(tid, 0) > 0]
    total_frames = sum(count for _, count in measured)
    if not measured or total_frames <= 0:
        return None
    return sum(seconds for seconds, _ in measured) / total_frames, len(measured)


def estimate_job(
    *,
    task_frames: Sequence[int],
    frame_tile_seconds: float | None,
    measured_tasks: int,
    resolution_seconds: float | None,
    mean_measured_seconds: float | None,
    instance_type: str,
    preemptible: bool,
    max_instances: int,
    price: Price | None,
    note: str = "",
    source: str = "scouts",
) -> Estimate:
    """The estimate of a job whose tasks hold ``task_frames`` frames each."""
    base = Estimate(
        instance_type=instance_type,
        preemptible=preemptible,
        tasks=len(task_frames),
        frame_tiles=sum(task_frames),
        source=source,
        measured_tasks=measured_tasks,
    )
    if frame_tile_seconds is None:
        return replace(base, note=note or "no scout task finished while the run was looking")
    seconds = [count * frame_tile_seconds for count in task_frames]
    hours = sum(seconds) / 3600.0
    relative = None
    if resolution_seconds is not None and mean_measured_seconds:
        relative = resolution_seconds / mean_measured_seconds
    notes = [note] if note else []
    if price is None and not note:
        notes.append(f"no price for {instance_type} in the price table")
    return replace(
        base,
        frame_tile_seconds=frame_tile_seconds,
        instance_hours=hours,
        wall_seconds=wall_seconds(seconds, max_instances),
        hourly=None if price is None else price.hourly(preemptible),
        cost=None if price is None else hours * price.hourly(preemptible),
        resolution_seconds=resolution_seconds,
        relative_error=relative,
        note="; ".join(notes),
    )
