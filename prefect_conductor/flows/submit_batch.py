"""submit_batch: many job files, one render-submit run each, at most ``max_concurrent`` at once.

For pipeline automation (a sequence's shots at once). Each job file becomes a ``submit-one`` task
that runs the render-submit flow, either here as a subflow or, with ``deployment``, as a run of
that deployment on the studio's workers, on the ``batch`` work queue: a queue of lower priority
than the artists' Submits, so a 40-shot batch never starves a single Submit (deployments/README.md).
The batch ends with a table artifact (shot, run, jobs, state) and fails when any shot failed;
the other shots still run.

Each shot's submission key is ``<batch key>:<n>`` (n: the file's place in the batch), and with a
deployment it is also the flow run's idempotency key: a retried batch run finds its runs and
jobs instead of making new ones.

No ``from __future__ import annotations`` here: Prefect reads the parameters' annotations.
"""

import re
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from prefect_conductor.conductor_cloud.job.job_files import scene_beside
from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource

MAX_CONCURRENT = 32
"""The most shots a batch runs at once (its thread pool's size)."""

BATCH_QUEUE = "batch"
"""The work queue a batch's deployment runs go to (lower priority than the artists' queue)."""

JOB_LINK = re.compile(r"\[(scout|full) job (\w+)\]")


class BatchRow(BaseModel):
    """One line of the batch's summary table."""

    shot: str
    file: str
    run: str
    jobs: str
    state: str


@task(name="submit-one", retries=0)
def submit_one(
    job_file: str, key: str, deployment: str, options: RunOptions, queue: str
) -> BatchRow:
    """Run render-submit for one job file (here, or on ``deployment``); its row, never raising.

    A bad job file or a failed run is that shot's row, so one shot never stops the others.
    """
    path = Path(job_file)
    shot = path.parent.name or path.stem
    try:
        job = load_job(path)
        shot = job.title
        scene = SceneSource(export_path=str(scene_beside(path)))
        shot_options = options.model_copy(update={"submission_key": key})
        if deployment:
            return _on_deployment(path, shot, deployment, job, scene, shot_options, queue)
        return _here(path, shot, job, scene, shot_options)
    except Exception as error:  # the row says what failed; the batch goes on
        message = " ".join(str(error).split()) or type(error).__name__
        return BatchRow(shot=shot, file=str(path), run="-", jobs="-", state=f"Failed: {message}")


def _here(path: Path, shot: str, job: Any, scene: SceneSource, options: RunOptions) -> BatchRow:
    """render-submit as a subflow of this batch, in this process."""
    from prefect_conductor.flows.render_submit import render_submit

    state = cast(
        State[Any], render_submit(job=job, scene=scene, options=options, return_state=True)
    )
    run_id = str(state.state_details.flow_run_id)
    if not state.is_completed():
        return BatchRow(shot=shot, file=str(path), run=run_id, jobs="-", state=_state_text(state))
    result = state.result()
    jobs = ", ".join(f"{step} {info['jid']}" for step, info in result.get("jobs", {}).items())
    return BatchRow(shot=shot, file=str(path), run=run_id, jobs=jobs or "-", state="Completed")


def _on_deployment(
    path: Path,
    shot: str,
    deployment: str,
    job: Any,
    scene: SceneSource,
    options: RunOptions,
    queue: str,
) -> BatchRow:
    """A run of ``deployment`` on ``queue``, waited for; its jobs read from its link artifacts."""
    from prefect.deployments import run_deployment

    parameters = {
        "job": job.model_dump(mode="json", exclude_defaults=True),
        "scene": scene.model_dump(mode="json", exclude_defaults=True),
        "options": options.model_dump(mode="json", exclude_defaults=True),
    }
    run = cast(
        FlowRun,
        run_deployment(
            deployment,
            parameters=parameters,
            idempotency_key=options.submission_key,
            work_queue_name=queue or None,
            poll_interval=2,
        ),
    )
    state = run.state
    text = _state_text(state) if state is not None else "Unknown"
    return BatchRow(shot=shot, file=str(path), run=str(run.id), jobs=_jobs_of(run.id), state=text)


def _state_text(state: Any) -> str:
    """``Completed``, or ``Failed: <one line>``."""
    message = " ".join(str(state.message or "").split())
    return f"{state.name}: {message}" if message and not state.is_completed() else state.name


def _jobs_of(run_id: Any) -> str:
    """``scout 00001, full 00002`` from the run's ``scout-job``/``full-job`` link artifacts."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    found = [JOB_LINK.search(str(artifact.data or "")) for artifact in artifacts]
    jobs = sorted({m.group(1, 2) for m in found if m}, key=lambda pair: pair[0] != "scout")
    return ", ".join(f"{step} {jid}" for step, jid in jobs) or "-"


@flow(
    name="submit-batch",
    log_prints=False,
    persist_result=False,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT),  # type: ignore[arg-type]
)
def submit_batch(
    job_files: list[str],
    deployment: str = "",
    max_concurrent: int = 4,
    options: RunOptions = RunOptions(),  # noqa: B008 - a frozen model, safe as a default
    work_queue: str = BATCH_QUEUE,
) -> Any:
    """Submit many job files, one render-submit run each, ``max_concurrent`` at a time.

    Args:
        job_files: Absolute paths of job files the workers can read; each has its scene export
            (scene_export.json) beside it.
        deployment: Run each shot on this render-submit deployment (``render-submit/conductor``);
            empty runs each shot here, as a subflow.
        max_concurrent: How many shots run at once (1 to 32).
        options: How to run every shot (its submission key is made per shot).
        work_queue: The work queue of the deployment runs (the studio's low-priority queue).
    """
    logger = get_run_logger()
    width = max(1, min(MAX_CONCURRENT, max_concurrent))
    key = options.submission_key or str(flow_run.id)
    pending = [(n, name) for n, name in enumerate(job_files)]
    active: dict[PrefectFuture[BatchRow], int] = {}
    rows: dict[int, BatchRow] = {}
    while pending or active:
        while pending and len(active) < width:
            n, name = pending.pop(0)
            future = submit_one.submit(name, f"{key}:{n}", deployment, options, work_queue)
            active[future] = n
        done = next(as_completed(list(active)))
        rows[active.pop(done)] = done.result()
    table = [rows[n].model_dump() for n in sorted(rows)]
    create_table_artifact(table, key="batch-summary", description="One row per shot")
    failed = [row for row in table if row["state"] != "Completed"]
    logger.info("Batch: %d shots, %d failed", len(table), len(failed))
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(table)} shots did not complete"
            f" (first: {failed[0]['shot']}, {failed[0]['state']})",
            data=table,
        )
    return table
