"""Who watches the suspended runs: one watch-jobs run, alive only while some render run waits.

A render run that suspends (``tasks/follow.py``) first tags itself ``conductor-waiting``, then
makes sure a watcher is on duty: unless a run of the watch-jobs deployment is running, pending or
due, it starts one. That run passes every ``watch_seconds`` while any run waits and ends when none
does (``flows/watch_jobs.py``), so a job is seen finished as promptly as a 30-second schedule saw
it, and the Runs list shows one watcher per busy stretch instead of one run every 30 seconds.

Handing over without losing a run: before it ends, the watcher tags itself
``conductor-watcher-ending`` and looks for waiting runs once more; a suspending run tags itself
before it looks for a watcher, and does not count one that carries that tag. Whichever looks
second sees the other: the watcher finds the new run and carries on, or the run finds the watcher
ending and starts another. A watcher lost some other way (its worker died) is replaced by the next
run that suspends, or by the deployment's slow safety schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from prefect_conductor.conductor_cloud.settings import get_settings

ENDING_TAG = "conductor-watcher-ending"
"""The tag a watcher puts on itself before its last look for waiting runs."""
ON_DUTY_STATES = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]


def watchers_on_duty(
    client: SyncPrefectClient, deployment_id: UUID, other_than: UUID | None = None
) -> list[FlowRun]:
    """The deployment's runs that are, or will soon be, watching: running or about to, not
    ending, and not a scheduled run whose time has not come (the safety schedule's next ones)."""
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ON_DUTY_STATES))
        ),
        limit=50,
    )
    due = datetime.now(UTC) + timedelta(seconds=get_settings().watch_seconds)
    return [
        run
        for run in runs
        if run.id != other_than and ENDING_TAG not in run.tags and _starts_by(run, due)
    ]


def _starts_by(run: FlowRun, when: datetime) -> bool:
    """Whether ``run`` runs already, or is scheduled to start by ``when``."""
    if run.state_type is not StateType.SCHEDULED:
        return True
    start = run.next_scheduled_start_time or run.expected_start_time
    return start is None or start <= when


def ensure_watcher(idempotency_key: str) -> str:
    """Start a run of the watcher deployment unless one is on duty; one line saying what was done.

    ``idempotency_key`` names the caller's wait, so a retried call starts no second watcher.
    """
    settings = get_settings()
    name = settings.watcher_deployment
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return f"no {name} deployment: nothing resumes this run until it is deployed and run"
        if deployment.paused:
            return f"{name} is paused: this run is resumed by the next watcher pass someone starts"
        if watchers_on_duty(client, deployment.id):
            return f"a {name} run is watching"
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"every_seconds": settings.watch_seconds},
            idempotency_key=idempotency_key,
        )
    return f"started {name} run {run.name}, passing every {settings.watch_seconds:g} s"
