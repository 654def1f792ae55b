"""watch_jobs: resume the render runs whose Conductor jobs have finished, one listing per pass.

A ``render-submit`` run waiting on Conductor is suspended (no process) with the tags
``conductor-waiting`` and ``conductor-jid:<jid>`` (``tasks/follow.py``). Each pass of this flow,
deployed on an interval schedule (``deployments/prefect.yaml``: ``watch-jobs/conductor``):

1. reads the suspended runs with that tag from Prefect (pages of 200);
2. asks Conductor once per Conductor account in use (runs are grouped by their options'
   ``conductor_url`` and ``credentials_block``): ``GET api/v1/jobs?filter=jid_gt_<lowest-1>,
   jid_lt_<highest+1>`` (ciocore's own job listing), so the cost is one request per pass however
   many runs wait; the listing also returns other jobs in that jid range, which are ignored;
3. resumes each run whose job's status is final (success, downloaded, failed, killed); the
   resumed run reads its tasks, emits its events and carries on. A job missing from the listing
   is looked for again on the next pass.

It posts nothing and changes no job, so an overlapping or repeated pass is harmless: resuming a
run that is no longer suspended is refused by Prefect and skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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

from prefect_conductor.conductor_cloud.api.status import JobStatus
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.transfers.job_outputs import job_id
from prefect_conductor.tasks.common import client_for
from prefect_conductor.tasks.follow import JID_TAG_PREFIX, WAITING_TAG

PAGE = 200


@dataclass(frozen=True)
class Waiting:
    """A suspended run and the job it waits for."""

    run_id: UUID
    jid: str
    options: RunOptions


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
    return Waiting(run.id, jid, options)


def finished_jobs(listing: Iterable[dict[str, Any]]) -> set[str]:
    """The jids of the listed jobs whose status is final."""
    return {
        f"{int(str(job['jid'])):05d}"
        for job in listing
        if str(job.get("jid", "")).isdigit() and JobStatus.parse(job.get("status")).finished
    }


def due(waiting: list[Waiting]) -> tuple[list[Waiting], int]:
    """The waiting runs whose jobs finished, and how many Conductor listings that took.

    An account whose listing fails (unreachable, refused, a missing credentials block) is logged
    and asked again next pass; the other accounts' runs are still resumed.
    """
    groups: dict[tuple[str, str], list[Waiting]] = defaultdict(list)
    for item in waiting:
        groups[(item.options.conductor_url, item.options.credentials_block)].append(item)
    ready: list[Waiting] = []
    for (url, block), items in groups.items():
        numbers = [int(item.jid) for item in items]
        try:
            with client_for(items[0].options) as conductor:
                done = finished_jobs(conductor.list_jobs(min(numbers), max(numbers)))
        except SubmitterError as error:
            get_run_logger().warning(
                "job listing for %d run(s) (conductor_url %r, credentials_block %r) failed,"
                " asking again next pass: %s",
                len(items),
                url,
                block,
                error,
            )
            continue
        ready.extend(item for item in items if item.jid in done)
    return ready, len(groups)


@flow(name="watch-jobs", log_prints=False, persist_result=False)
def watch_jobs() -> dict[str, Any]:
    """Resume every suspended render run whose Conductor job has finished (one pass)."""
    logger = get_run_logger()
    with get_client(sync_client=True) as client:
        waiting = list(waiting_runs(client))
        if not waiting:
            return {"waiting": 0, "listings": 0, "resumed": []}
        ready, listings = due(waiting)
        resumed = []
        for item in ready:
            answer = client.resume_flow_run(item.run_id)
            if answer.status.value == "ACCEPT":
                resumed.append(item.jid)
    logger.info(
        "%d run(s) waiting, %d Conductor listing(s), resumed for jobs %s",
        len(waiting),
        listings,
        ", ".join(resumed) or "none",
    )
    return {"waiting": len(waiting), "listings": listings, "resumed": resumed}
