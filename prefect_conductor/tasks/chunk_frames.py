"""chunk_frames: show the plan (Frames Info and every task) as artifacts a person can read."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from prefect_conductor.conductor_cloud.submission import Prepared, plan_rows

MAX_PLAN_ROWS = 2000


@task(name="chunk-frames", retries=0)
def chunk_frames(prepared: Prepared) -> str:
    """The Frames Info line; the plan table lists each task (the first 2000 of a huge plan)."""
    plan = prepared.plan
    get_run_logger().info("Frames Info: %s", plan.info)
    create_markdown_artifact(
        f"**Frames Info:** `{plan.info}`\n\n"
        + "\n".join(
            f"- job `{step}`: {len(tasks)} tasks" for step, tasks in prepared.steps.items()
        ),
        key="frames-info",
        description="Frames Info",
    )
    create_table_artifact(
        plan_rows(plan)[:MAX_PLAN_ROWS], key="frame-plan", description=f"Plan: {plan.info}"
    )
    return plan.info
