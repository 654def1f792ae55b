"""approve: after the scouts, go on automatically or wait for a person in the Prefect UI."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Cancelled

from prefect_conductor.conductor_cloud.job.model import ConductorJob


class Approval(RunInput):
    """The form shown on Resume: approve the full render, or stop it with a reason."""

    approve: bool = True
    reason: str = ""


def ask_for_approval(job: ConductorJob, scout_summary: str, poll_seconds: float) -> Approval | None:
    """Pause the run until someone answers; None when nobody did in time.

    Runs in the flow itself (pausing is a flow-level act), not in a task. The process stays
    alive while paused (``pause_flow_run``, not ``suspend_flow_run``): nothing before this point
    runs twice, so the scout job is never posted again on resume.
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
    except FlowPauseTimeout:  # a PrefectException, not a TimeoutError
        return None
    return answer


def cancel_after_timeout(message: str) -> None:
    """Mark the run Cancelled, with ``message``, once nobody answered in time.

    After a pause's deadline Prefect's server turns any state the run proposes into Failed
    ("The flow was ... and never resumed"). Nobody answering is a stop, not a fault, so the
    Cancelled state is set with ``force``; the flow then returns the same Cancelled state.
    """
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelled(message=message), force=True)
