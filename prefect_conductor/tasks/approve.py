"""approve: after the scouts, go on by itself or wait, holding no process, for a person's answer.

The full job waits for a person when the estimate is over the job's budget, when a budget is set
and the estimate has no cost, or when approval is ``manual`` (``cost/budget.py``). A deployed run
then *suspends* with the approval form (``suspend_flow_run(wait_for_input=Approval)``), the
estimate in its description, and the tag ``conductor-approval``: its process exits and nothing is
held while it waits. Resuming it with an answer (the Prefect UI's Resume form, or
``resume_flow_run(run_id, run_input={"approve": true})``) starts the run again from the top; every
earlier step re-uses its persisted result, and this call returns the answer that was given, so
the full job is posted once or not at all. The watcher (``flows/watch_jobs.py``) ends an approval
nobody answered within ``approval_timeout_minutes`` as Cancelled.

A local run (no deployment) cannot wait suspended: it stops before the full job with one line
naming the command that posts it later (``submit`` with the same ``--submission-key`` and
``--approve``; the duplicate guard then re-uses the scout job).
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from prefect_conductor.conductor_cloud.job.model import ConductorJob

APPROVAL_TAG = "conductor-approval"
"""The tag of a run suspended until a person approves its full job (the watcher times them out)."""


class Approval(RunInput):
    """The form shown on Resume: approve the full render, or stop it with a reason."""

    approve: bool = True
    reason: str = ""


def approval_key(scout_jid: str) -> str:
    """The pause key of the approval after scout job ``scout_jid``: the same on the re-run, so
    Prefect hands back the answer instead of suspending again."""
    return f"conductor-approval-{scout_jid}"


def timed_out_message(minutes: int | float) -> str:
    """The one line a run ends with when nobody approved it in time."""
    return (
        f"no approval within {minutes:g} minutes (approval_timeout_minutes); the remaining frames"
        " were not submitted"
    )


def local_stop_message(reason: str, submission_key: str) -> str:
    """The one line a local run stops with: why, and the command that posts the full job."""
    return (
        f"the full job needs approval ({reason}); a local run cannot wait suspended, so it stops"
        " after the scouts. Post the remaining frames with: prefect-conductor submit JOB_FILE"
        f" --submission-key {submission_key} --approve"
    )


def _tag(add: bool) -> None:
    with get_client(sync_client=True) as client:
        tags = set(client.read_flow_run(flow_run.id).tags)
        wanted = tags | {APPROVAL_TAG} if add else tags - {APPROVAL_TAG}
        if wanted != tags:
            client.update_flow_run(flow_run.id, tags=sorted(wanted))


def ask_for_approval(job: ConductorJob, description: str, scout_jid: str) -> Approval:
    """Suspend the run until someone answers, and return the answer (on the resumed re-run).

    Runs in the flow itself (suspending is a flow-level act), not in a task; the first call
    never returns (the process exits), the re-run's call returns the answer given on Resume.
    """
    get_run_logger().info("Waiting for approval of the full render, holding no process")
    _tag(True)
    answer = suspend_flow_run(
        wait_for_input=Approval.with_initial_data(description=description, approve=True),
        timeout=job.approval_timeout_minutes * 60,
        key=approval_key(scout_jid),
    )
    _tag(False)
    if answer is None:  # resumed without the form's input: treat as no answer, never as a yes
        return Approval(approve=False, reason="resumed without an answer")
    return answer
