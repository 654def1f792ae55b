"""``prefect-conductor wait JID``: wait for a job's tasks to settle, and say how it went.

One task listing per look, with the backoff of ``job_outputs.wait_for_tasks``. The outcome is
the exit code ``status`` and ``download`` share (docs/commands.md): 0 every task rendered,
4 some task failed, was killed or was left preempted (:class:`TasksFailed`, one line naming the
job, the tasks and their frames), 5 time ran out (:class:`JobNotFinished`, one line with how
many tasks are still open and their status words), 2 a job id that is not one or that
Conductor's job listing does not hold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prefect_conductor.conductor_cloud.api.client_errors import NotFoundError
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    ConductorJobs,
    TasksFailed,
    TaskState,
    not_rendered_message,
    wait_for_tasks,
)


def wait_for_job(
    client: ConductorJobs,
    jid: str,
    *,
    timeout_seconds: float | None = None,
    poll_seconds: float = 10.0,
    say: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """One line once every task of ``jid`` rendered; raises for any other outcome.

    ``timeout_seconds`` None waits as long as it takes, 0 looks once. A job the job listing does
    not hold is a :class:`UserError` at once (a wait without a limit would never end).
    ``say`` hears a progress line whenever the count of settled tasks changes.
    """
    try:
        client.get_job(jid)
    except NotFoundError:
        raise UserError(
            f"JID: Conductor lists no job {jid} for this account (check the job id)"
        ) from None
    seen: list[tuple[int, int]] = []

    def progress(states: list[TaskState]) -> None:
        settled = (sum(1 for s in states if s.status.finished), len(states))
        if states and settled not in seen:
            seen.append(settled)
            say(f"job {jid}: {settled[0]} of {settled[1]} tasks settled")

    states = wait_for_tasks(
        client,
        jid,
        poll_seconds=poll_seconds,
        timeout_seconds=math.inf if timeout_seconds is None else timeout_seconds,
        sleep=sleep,
        on_poll=progress,
    )
    line = not_rendered_message(jid, states)
    if line is not None:
        raise TasksFailed(line)
    return f"job {jid}: all {len(states)} tasks rendered"
