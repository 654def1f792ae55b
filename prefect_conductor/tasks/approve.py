"""approve: after the scouts, go on automatically or wait for a person in the Prefect UI."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from prefect_conductor.conductor_cloud.job import ConductorJob


class Approval(RunInput):
    """The form shown on Resume: approve the full render, or stop it with a reason."""

    approve: bool = True
    reason: str = ""


def ask_for_approval(job: ConductorJob, scout_summary: str, poll_seconds: float) -> Approval | None:
    """Pause the run until someone answers; None when nobody did in time.

    Runs in the flow itself (pausing is a flow-level act), not in a task.
    """
    logger = get_run_logger()
    logger.info("Waiting for approval of the full render (%s)", scout_summary)
    description = (
        f"Scout frames rendered: {scout_summary}. Approve to submit the remaining frames of"
        f" '{job.title}', or untick approve and give a reason to stop."
    )
    try:
        answer = pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description, approve=True),
            timeout=job.approval_timeout_minutes * 60,
            poll_interval=max(1, int(poll_seconds)),
        )
    except TimeoutError:
        return None
    return answer
