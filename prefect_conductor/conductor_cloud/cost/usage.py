"""The instance-hours a job took, from its task clock: the one sum every report of usage uses.

Each finished task held one machine for its duration, as the run's looks at the task listing saw
it (``api/task_clock.py``); a job's instance-hours are the sum over its tasks, known to within
the clock's resolution per task.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.cost.prices import Price


@dataclass(frozen=True)
class Usage:
    """A job's measured instance-hours, how many tasks they cover and how precise they are."""

    instance_hours: float
    tasks: int
    resolution_seconds: float

    @property
    def error_hours(self) -> float:
        """The most the sum can be off: one resolution per task."""
        return self.tasks * self.resolution_seconds / 3600.0

    def cost(self, price: Price | None, preemptible: bool) -> float | None:
        """The cost in the prices' currency; None without a price."""
        return None if price is None else self.instance_hours * price.hourly(preemptible)


def job_instance_hours(clock: TaskClock, tids: Collection[str] | None = None) -> Usage:
    """Instance-hours of a job from its clock (only the tasks ``tids`` when given)."""
    durations = clock.durations()
    chosen = [s for tid, s in durations.items() if tids is None or tid in tids]
    return Usage(
        instance_hours=sum(chosen) / 3600.0,
        tasks=len(chosen),
        resolution_seconds=clock.resolution,
    )
