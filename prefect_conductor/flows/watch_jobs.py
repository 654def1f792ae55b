"""watch_jobs: resume the render runs whose Conductor jobs have finished or have new frames.

A ``render-submit`` run waiting on Conductor is suspended (no process) with the tags
``conductor-waiting`` and ``conductor-jid:<jid>`` (``tasks/follow.py``). Each pass of this flow:

1. reads the suspended runs with that tag from Prefect (pages of 200);
2. asks Conductor once per Conductor account in use (runs are grouped by their options'
   ``conductor_url`` and ``credentials_block``): ``GET api/v1/jobs?filter=jid_gt_<lowest-1>,
   jid_lt_<highest+1>`` (ciocore's own job listing), so the cost is one request per pass however
   many runs wait; the listing also returns other jobs in that jid range, which are ignored;
3. reads the task listing of each waiting run's job (one request per job per pass) and keeps
   what it saw in the job's task clock (``tasks/task_clocks.py``), scouts included, so the
   clock knows each task's duration while no run process is alive to look;
4. resumes each run whose job's status is final (success, downloaded, failed, killed,
   preempted: a job left preempted once Conductor's own retries are spent, ``status.py``); the
   resumed run reads its tasks, emits its events and carries on. A job missing from the listing
   is looked for again on the next pass;
5. resumes a run that follows its job's frames (tagged ``conductor-downloaded:<jid>:<n>``, n
   tasks downloaded) when more than n tasks have succeeded and it has been suspended for at least
   ``frames_resume_seconds``: it downloads the new tasks and suspends again.

With ``every_seconds`` 0 the flow makes one pass. A render run that suspends starts it with
``every_seconds`` (``tasks/watcher_runs.py``): it then passes that often while any run waits and
ends when none does, handing over as that module describes, so it runs only while there is
something to watch. A second watcher that finds an earlier one at work ends at once.

Each pass also ends the runs suspended for a person's approval (``tasks/approve.py``) whose
``approval_timeout_minutes`` have passed, as Cancelled naming the timeout (the hourly schedule
makes sure such a pass comes even when no run waits on Conductor).

It posts nothing and changes no job, so an overlapping or repeated pass is harmless: resuming a
run that is no longer suspended is refused by Prefect and skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import sleep
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.logging import get_logger
from prefect.runtime import flow_run
from prefect.states import Cancelled

from prefect_conductor.conductor_cloud.api.retry import redacted_url
from prefect_conductor.conductor_cloud.api.status import JobStatus
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    ConductorJobs,
    TaskState,
    job_id,
    listed_tasks,
)
from prefect_conductor.tasks.approve import APPROVAL_TAG, timed_out_message
from prefect_conductor.tasks.common import client_for
from prefect_conductor.tasks.follow import DOWNLOADED_TAG_PREFIX, JID_TAG_PREFIX, WAITING_TAG
from prefect_conductor.tasks.task_clocks import ClockRecords
from prefect_conductor.tasks.watcher_runs import ENDING_TAG, ON_DUTY_STATES, watchers_on_duty

PAGE = 200
STALE = timedelta(minutes=15)
"""A run tagged as waiting but neither suspended nor moving for this long is not waited for."""


@dataclass(frozen=True)
class Waiting:
    """A suspended run and the job it waits for."""

    run_id: UUID
    jid: str
    options: RunOptions
    downloaded: int | None = None
    """How many of the job's tasks the run has downloaded; None for a run not following frames."""
    suspended_at: datetime | None = None

    def wants_frames(self, states: list[TaskState], now: datetime, every: timedelta) -> bool:
        """A run following frames whose job has more tasks succeeded than it downloaded, and
        which has been suspended for at least ``every``."""
        if self.downloaded is None:
            return False
        if self.suspended_at is not None and now - self.suspended_at < every:
            return False
        return sum(1 for s in states if s.status.succeeded) > self.downloaded


def waiting_runs(client: SyncPrefectClient) -> Iterator[Waiting]:
    """Every suspended run tagged ``conductor-waiting`` that names its job in a tag."""
    wanted = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=[WAITING_TAG]),
    )
    offset = 0
    while True:
        page = client.read_flow_runs(flow_run_filter=wanted, limit=PAGE, offset=offset)
        for run in page:
            found = _waiting(run)
            if found is not None:
                yield found
        if len(page) < PAGE:
            return
        offset += PAGE


def _waiting(run: FlowRun) -> Waiting | None:
    """The run's job and options; None for a run that names no (valid) job."""
    jids = [t.removeprefix(JID_TAG_PREFIX) for t in run.tags if t.startswith(JID_TAG_PREFIX)]
    if len(jids) != 1 or (run.state is not None and run.state.name != "Suspended"):
        return None
    try:
        jid = job_id(jids[0])
        options = RunOptions.model_validate(run.parameters.get("options") or {})
    except (SubmitterError, ValueError):
        return None
    downloaded = _downloaded(run.tags, jid)
    since = run.state.timestamp if run.state is not None else None
    return Waiting(run.id, jid, options, downloaded, since)


def _downloaded(tags: Iterable[str], jid: str) -> int | None:
    """How many of job ``jid``'s tasks the run says it has downloaded (``conductor-downloaded:
    <jid>:<n>``); None when it follows no frames of that job or says so twice."""
    counts = []
    for tag in tags:
        if not tag.startswith(DOWNLOADED_TAG_PREFIX):
            continue
        named, _, count = tag.removeprefix(DOWNLOADED_TAG_PREFIX).rpartition(":")
        try:
            if job_id(named) == jid and count.isascii() and count.isdigit() and len(count) < 9:
                counts.append(int(count))
        except SubmitterError:
            continue
    return counts[0] if len(counts) == 1 else None


def finished_jobs(
    listing: Iterable[dict[str, Any]], skipped: Callable[[str], None] = lambda _line: None
) -> set[str]:
    """The jids of the listed jobs whose status is final; ``skipped`` hears of an odd record."""
    done: set[str] = set()
    for job in listing:
        named = str(job.get("jid", "")) if isinstance(job, dict) else ""
        try:
            jid = job_id(named)
        except SubmitterError:
            skipped(f"skipped a job record whose jid is not a Conductor job id: {named[:40]!r}")
            continue
        if JobStatus.parse(job.get("status")).finished:
            done.add(jid)
    return done


def look_at_tasks(conductor: ConductorJobs, jids: Iterable[str]) -> dict[str, list[TaskState]]:
    """Each job's task listing (one request per job), fed to the job's task clock.

    A job whose listing fails is logged and left out: its runs are looked at again next pass.
    """
    clocks = ClockRecords()
    looks: dict[str, list[TaskState]] = {}
    for jid in sorted(set(jids)):
        try:
            states = listed_tasks(conductor, jid)
        except SubmitterError as error:
            get_run_logger().warning("task listing of job %s failed, next pass: %s", jid, error)
            continue
        looks[jid] = states
        clock = clocks.read(jid)
        clock.observe([(s.tid, s.status) for s in states], datetime.now(UTC).timestamp())
        clocks.write(jid, clock)
    return looks


def due(waiting: list[Waiting]) -> tuple[list[Waiting], int, int]:
    """The waiting runs to resume, and how many job and task listings that took.

    A run is resumed when its job finished (one job listing per account) or, following its
    frames, when more of its job's tasks have succeeded than it downloaded (one task listing per
    waiting job, which also feeds the job's task clock). An account whose job listing fails
    (unreachable, refused, a missing credentials block) is logged and asked again next pass; the
    other accounts' runs are still resumed.
    """
    groups: dict[tuple[str, str], list[Waiting]] = defaultdict(list)
    for item in waiting:
        groups[(item.options.conductor_url, item.options.credentials_block)].append(item)
    every = timedelta(seconds=get_settings().frames_resume_seconds)
    now = datetime.now(UTC)
    ready: list[Waiting] = []
    task_listings = 0
    for (url, block), items in groups.items():
        numbers = [int(item.jid) for item in items]
        try:
            with client_for(items[0].options) as conductor:
                listing = conductor.list_jobs(min(numbers), max(numbers))
                done = finished_jobs(listing, get_run_logger().warning)
                looks = look_at_tasks(conductor, (item.jid for item in items))
                task_listings += len({item.jid for item in items})
        except SubmitterError as error:
            get_run_logger().warning(
                "job listing for %d run(s) (conductor_url %r, credentials_block %r) failed,"
                " asking again next pass: %s",
                len(items),
                redacted_url(url) if url else url,
                block,
                error,
            )
            continue
        ready.extend(
            item
            for item in items
            if item.jid in done or item.wants_frames(looks.get(item.jid, []), now, every)
        )
    return ready, len(groups), task_listings


def end_timed_out_approvals(client: SyncPrefectClient, now: datetime | None = None) -> list[UUID]:
    """End, as Cancelled naming the timeout, every run suspended for approval (tagged
    ``conductor-approval``) past its deadline; Prefect itself never ends a suspended run."""
    wanted = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=[APPROVAL_TAG]),
    )
    moment = now or datetime.now(UTC)
    ended: list[UUID] = []
    for run in client.read_flow_runs(flow_run_filter=wanted, limit=PAGE):
        state = run.state
        deadline = state.state_details.pause_timeout if state is not None else None
        if state is None or state.name != "Suspended" or deadline is None or deadline > moment:
            continue
        job = run.parameters.get("job")
        minutes = job.get("approval_timeout_minutes") if isinstance(job, dict) else None
        if not isinstance(minutes, int | float):
            minutes = round((deadline - state.timestamp).total_seconds() / 60.0, 1)
        client.set_flow_run_state(run.id, Cancelled(message=timed_out_message(minutes)), force=True)
        ended.append(run.id)
    if ended:
        get_logger(__name__).info("ended %d approval(s) nobody answered in time", len(ended))
    return ended


def watch_pass(client: SyncPrefectClient) -> dict[str, Any]:
    """One pass: the waiting runs, the Conductor listings it took, the jobs whose runs resumed."""
    end_timed_out_approvals(client)
    waiting = list(waiting_runs(client))
    if not waiting:
        return {"waiting": 0, "listings": 0, "task_listings": 0, "resumed": []}
    ready, listings, task_listings = due(waiting)
    resumed = []
    for item in ready:
        answer = client.resume_flow_run(item.run_id)
        if answer.status.value == "ACCEPT":
            resumed.append(item.jid)
    get_run_logger().info(
        "%d run(s) waiting, %d Conductor job listing(s), %d task listing(s), resumed for jobs %s",
        len(waiting),
        listings,
        task_listings,
        ", ".join(resumed) or "none",
    )
    return {
        "waiting": len(waiting),
        "listings": listings,
        "task_listings": task_listings,
        "resumed": resumed,
    }


def runs_still_waiting(client: SyncPrefectClient) -> bool:
    """Whether any run is suspended on a job, about to suspend or just resumed (tagged and not
    finished). A tagged run stuck in another state for :data:`STALE` is not waited for."""
    tagged = FlowRunFilterTags(all_=[WAITING_TAG])
    suspended = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=tagged,
    )
    if client.read_flow_runs(flow_run_filter=suspended, limit=1):
        return True
    moving = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ON_DUTY_STATES)), tags=tagged
    )
    recent = datetime.now(UTC) - STALE
    return any(
        run.state is not None and run.state.timestamp > recent
        for run in client.read_flow_runs(flow_run_filter=moving, limit=PAGE)
    )


def _set_ending(client: SyncPrefectClient, run_id: UUID, ending: bool) -> None:
    tags = set(client.read_flow_run(run_id).tags)
    client.update_flow_run(
        run_id, tags=sorted(tags | {ENDING_TAG} if ending else tags - {ENDING_TAG})
    )


def _earlier_watcher(client: SyncPrefectClient, me: FlowRun) -> FlowRun | None:
    """A watcher of the same deployment that was running before this one started."""
    if me.deployment_id is None:
        return None
    mine = (me.start_time, str(me.id))
    for other in watchers_on_duty(client, me.deployment_id, other_than=me.id):
        if other.state_type is StateType.RUNNING and (other.start_time, str(other.id)) < mine:
            return other
    return None


@flow(name="watch-jobs", log_prints=False, persist_result=False)
def watch_jobs(every_seconds: float = 0) -> dict[str, Any]:
    """Resume every suspended render run whose Conductor job has finished: one pass, or with
    ``every_seconds`` a pass that often for as long as any run waits."""
    logger = get_run_logger()
    totals: dict[str, Any] = {
        "waiting": 0,
        "listings": 0,
        "task_listings": 0,
        "resumed": [],
        "passes": 0,
    }
    with get_client(sync_client=True) as client:
        me = client.read_flow_run(flow_run.id)
        if every_seconds > 0 and (earlier := _earlier_watcher(client, me)) is not None:
            logger.info("watcher %s is already watching; this one ends", earlier.name)
            return totals
        while True:
            done = watch_pass(client)
            totals.update(waiting=done["waiting"], passes=totals["passes"] + 1)
            totals["listings"] += done["listings"]
            totals["task_listings"] += done["task_listings"]
            totals["resumed"] += done["resumed"]
            if every_seconds <= 0:
                return totals
            if not runs_still_waiting(client):
                _set_ending(client, me.id, True)  # then look once more: see tasks/watcher_runs.py
                if not runs_still_waiting(client):
                    logger.info("no run waits any more: %d pass(es), ending", totals["passes"])
                    return totals
                _set_ending(client, me.id, False)
            sleep(every_seconds)
