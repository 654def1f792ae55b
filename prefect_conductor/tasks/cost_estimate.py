"""The cost side of a run: the studio's prices, the full job's estimate after the scouts, the
hours each finished job took, and the shot's measured frame time for a later ``preview``.

Prices come from the Prefect Variable ``conductor-prices`` (``cost/prices.py``), which a studio
admin edits in the Prefect UI; a missing or malformed table is one line in the estimate, never a
failed run (the budget gate then asks a person). Task times come from each job's task clock in
result storage (``task_clocks.py``): the local scout wait writes it, and for a run waiting
suspended the watcher does; an empty clock makes an estimate that says it has no timing.

The measured time of one whole frame is kept in the Prefect Variable
``conductor-frame-time-<hash of project and title>`` (``cost/estimate.py``), so ``preview`` of the
same shot can estimate before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import PrefectException
from prefect.runtime import flow_run
from prefect.variables import Variable

from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.cost.estimate import (
    Estimate,
    estimate_job,
    frame_time_variable,
    per_frame_tile,
)
from prefect_conductor.conductor_cloud.cost.prices import (
    PRICES_VARIABLE,
    Price,
    parse_prices,
    unpriced,
)
from prefect_conductor.conductor_cloud.cost.usage import job_instance_hours
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.transfers.job_outputs import listed_tasks
from prefect_conductor.tasks.common import client_for, never_retry_user_errors
from prefect_conductor.tasks.task_clocks import ClockRecords


def read_prices() -> tuple[dict[str, Price], str]:
    """The price table, and one line saying why it is empty ('' when it is not)."""
    try:
        value = Variable.get(PRICES_VARIABLE, default=None)
    except PrefectException as error:
        return {}, f"{PRICES_VARIABLE}: could not be read ({error})"
    if value is None:
        return {}, f"no Prefect Variable {PRICES_VARIABLE}, so no prices"
    try:
        return parse_prices(value), ""
    except UserError as error:
        return {}, str(error)


def task_frames(tasks_data: Sequence[dict[str, Any]]) -> list[int]:
    """How many frames each task of a payload renders (one tile of each, when tiled)."""
    return [len(parse_frame_spec(str(t.get("frames") or ""))) for t in tasks_data]


@task(
    name="estimate-cost",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=never_retry_user_errors,
)
def estimate_cost(
    scout_jid: str,
    full_tasks: list[int],
    job: ConductorJob,
    instance_types: list[str],
    options: RunOptions,
) -> dict[str, Any]:
    """The full job's estimate from the finished scout tasks' times; ``{"estimate", "usage"}``.

    Leaves the estimate as the run's ``cost-estimate`` artifact and keeps the measured frame
    time for the shot. ``full_tasks`` holds the frames of each full-job task.
    """
    logger = get_run_logger()
    clock = ClockRecords().read(scout_jid)
    with client_for(options) as client:
        states = [s for s in listed_tasks(client, scout_jid) if s.status.succeeded]
    frames = {s.tid: len(parse_frame_spec(s.frames)) for s in states if s.frames}
    durations = {tid: seconds for tid, seconds in clock.timed().items() if tid in frames}
    prices, problem = read_prices()
    if problem:
        logger.warning(problem)
    missing = unpriced(sorted(set(instance_types)), prices) if prices else []
    if missing:
        logger.warning(
            "%s has no price for %d of the catalogue's instance types: %s",
            PRICES_VARIABLE,
            len(missing),
            ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
        )
    measured = per_frame_tile(durations, frames)
    note = problem if problem and measured else ""
    if measured is None:
        note = "no timing: no scout task was seen both starting and finishing by the run's looks"
    estimate = estimate_job(
        task_frames=full_tasks,
        frame_tile_seconds=measured[0] if measured else None,
        measured_tasks=measured[1] if measured else 0,
        resolution_seconds=clock.resolution if measured else None,
        mean_measured_seconds=(sum(durations.values()) / len(durations)) if durations else None,
        instance_type=job.instance_type,
        preemptible=job.preemptible,
        max_instances=job.max_instances,
        price=prices.get(job.instance_type),
        note=note,
    )
    logger.info("%s", estimate.line())
    create_markdown_artifact(estimate.markdown(), key="cost-estimate", description=estimate.line())
    if estimate.frame_tile_seconds is not None:
        _keep_frame_time(job, estimate)
    usage = usage_of(clock, job, prices)
    return {"estimate": estimate.as_dict(), "usage": usage}


def _keep_frame_time(job: ConductorJob, estimate: Estimate) -> None:
    """Keep the shot's measured whole-frame time for a later preview; never fail the run."""
    seconds = (estimate.frame_tile_seconds or 0.0) * job.tiles
    value = {
        "project": job.project,
        "title": job.title,
        "instance_type": job.instance_type,
        "frame_seconds": round(seconds, 3),
        "resolution_seconds": round(estimate.resolution_seconds or 0.0, 3),
        "relative_error": round(estimate.relative_error or 0.0, 4),
        "measured_tasks": estimate.measured_tasks,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "flow_run": str(flow_run.id or ""),
    }
    try:
        Variable.set(frame_time_variable(job.project, job.title), value, overwrite=True)
    except (PrefectException, ValueError) as error:
        get_run_logger().warning("could not keep the measured frame time: %s", error)


def usage_of(clock: TaskClock, job: ConductorJob, prices: dict[str, Price]) -> dict[str, Any]:
    """A finished job's instance-hours (and cost with a price) from its clock, JSON-ready."""
    usage = job_instance_hours(clock)
    cost = usage.cost(prices.get(job.instance_type), job.preemptible)
    return {
        "instance_hours": round(usage.instance_hours, 6),
        "timed_tasks": usage.tasks,
        "resolution_seconds": round(usage.resolution_seconds, 3),
        "cost": None if cost is None else round(cost, 4),
    }


def measured_usage(jid: str, job: ConductorJob) -> dict[str, Any]:
    """The finished job ``jid``'s usage from its clock in result storage, with today's prices."""
    return usage_of(ClockRecords().read(jid), job, read_prices()[0])


def usage_table(rows: list[dict[str, Any]]) -> None:
    """The run's ``job-usage`` table: one row per finished job, estimate beside actual."""
    create_table_artifact(
        rows,
        key="job-usage",
        description="Instance-hours and cost (in the prices' currency) of each job",
    )
