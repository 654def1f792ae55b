"""chunk_frames: plan the frames into tasks and show the plan as artifacts a person can read."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from prefect_conductor.conductor_cloud.submission.prepare import (
    Checked,
    Planned,
    plan_job,
    plan_rows,
)

MAX_PLAN_ROWS = 2000


@task(name="chunk-frames", retries=0)
def chunk_frames(checked: Checked) -> Planned:
    """Chunk the frames and split the tasks between the scout and full jobs.

    The Frames Info line goes to the log and an artifact; the plan table lists each task (the
    first 2000 of a huge plan).
    """
    planned = plan_job(checked)
    plan = planned.plan
    get_run_logger().info("Frames Info: %s", plan.info)
    create_markdown_artifact(
        f"**Frames Info:** `{plan.info}`\n\n"
        + "\n".join(f"- job `{step}`: {len(tasks)} tasks" for step, tasks in planned.steps.items()),
        key="frames-info",
        description="Frames Info",
    )
    create_table_artifact(
        plan_rows(plan)[:MAX_PLAN_ROWS], key="frame-plan", description=f"Plan: {plan.info}"
    )
    return planned
