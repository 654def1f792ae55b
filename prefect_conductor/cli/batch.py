"""``prefect-conductor submit`` with several job files (or a folder): pipeline automation.

Every job file and its scene export is checked before anything starts, so a typo in shot 37 is
one line naming that file and nothing was submitted. Then either:

- ``--deployment``: one run of that deployment per file on the ``--work-queue`` (the studio's
  low-priority ``batch`` queue), started and not waited for; a table names each shot's run. Each
  run's idempotency key is its submission key (``<key>:<n>``), so the same command with the same
  ``--submission-key`` starts nothing twice.
- otherwise: one ``submit-batch`` flow run here, ``--max-concurrent`` shots at once as subflows,
  ending with the batch's table (shot, run, jobs, state) and a non-zero exit if a shot failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from prefect_conductor.conductor_cloud.errors import SubmitterError, UserError
from prefect_conductor.conductor_cloud.job.job_files import scene_beside
from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource


class BatchFailed(SubmitterError):
    """Some shots of a batch did not complete (the table names them)."""

    exit_code = 1


def start_batch(
    files: list[Path],
    *,
    deployment: str,
    max_concurrent: int,
    work_queue: str,
    options: dict[str, Any],
    echo: Callable[[str], None],
    echo_err: Callable[[str], None],
    quiet_tracebacks: bool,
) -> None:
    """Check every file, then start the batch (see the module's docstring)."""
    checked = [(path, load_job(path), scene_beside(path)) for path in files]
    run_options = RunOptions(**options)
    if deployment and "/" not in deployment:
        raise UserError(f"--deployment: {deployment!r} is not FLOW/DEPLOYMENT")
    from prefect_conductor.local_server.prefect_api import prefect_api

    with prefect_api(echo_err, quiet_tracebacks=quiet_tracebacks) as api:
        if deployment:
            rows = _start_on_deployment(checked, deployment, work_queue, run_options, api)
            _print_table(["shot", "file", "run", "link"], rows)
            echo(f"Started {len(rows)} runs of {deployment} on work queue {work_queue!r}.")
            return
        from prefect.states import State

        from prefect_conductor.flows.submit_batch import submit_batch

        state = cast(
            State[Any],
            submit_batch(
                job_files=[str(path) for path, _, _ in checked],
                max_concurrent=max_concurrent,
                options=run_options,
                return_state=True,
            ),
        )
        table = state.result(raise_on_failure=False)
        if isinstance(table, list):
            _print_table(
                ["shot", "run", "jobs", "state"],
                [[row["shot"], row["run"], row["jobs"], row["state"]] for row in table],
            )
        run_url = api.flow_run_url(state.state_details.flow_run_id)
        if run_url:
            echo(f"Batch run: {run_url}")
        if not state.is_completed():
            raise BatchFailed(" ".join(str(state.message or state.name).split()))


def _start_on_deployment(
    checked: list[tuple[Path, Any, Path]],
    deployment: str,
    work_queue: str,
    options: RunOptions,
    api: Any,
) -> list[list[str]]:
    """One run of ``deployment`` per job, not waited for; the table's rows."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    key = options.submission_key or f"batch-{uuid.uuid4()}"
    rows = []
    for n, (path, job, scene) in enumerate(checked):
        shot_options = options.model_copy(update={"submission_key": f"{key}:{n}"})
        parameters = {
            "job": job.model_dump(mode="json", exclude_defaults=True),
            "scene": SceneSource(export_path=str(scene)).model_dump(
                mode="json", exclude_defaults=True
            ),
            "options": shot_options.model_dump(mode="json", exclude_defaults=True),
        }
        try:
            run = cast(
                FlowRun,
                run_deployment(
                    deployment,
                    parameters=parameters,
                    timeout=0,
                    idempotency_key=shot_options.submission_key,
                    work_queue_name=work_queue or None,
                    as_subflow=False,
                ),
            )
        except ObjectNotFound:
            raise UserError(f"--deployment: no deployment {deployment!r}") from None
        rows.append([job.title, str(path), str(run.id), api.flow_run_url(run.id) or "-"])
    return rows


def _print_table(columns: list[str], rows: list[list[str]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=True).print(table)
