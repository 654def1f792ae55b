"""render_submit: a ConductorJob in, one scout job and one full job on Conductor out.

export_scene -> fetch_catalog -> validate -> resolve_packages -> chunk_frames -> upload_assets
-> scout_submit -> wait for the scouts -> estimate_cost -> approve (the budget gate) ->
full_submit -> (follow: wait for the job -> download and check its frames, rendering failed or
preempted tasks again as new jobs up to ``rerender_attempts`` times). Each step is a task in the
Prefect UI with its own retries (none for validation) and does its own step's work on the previous
step's result, so the run's graph is this chain; the ConductorJob is a typed parameter, so the
UI's Run form shows every field with its description.

How a run ends: Completed with the job ids and links; Failed with one line for a validation
error, a failed scout (naming its frames) or Conductor staying unreachable after the retries;
Cancelled, with the reason as the state's message, when an approval (over budget, or manual) was
refused or nobody answered in time, or when a local run needs one (it cannot wait suspended and
names the command that posts the full job later). Only a run on its way to Completed posts the
full job. See docs/cost.md for the estimate and the gate.

No duplicate jobs: each job carries the submission id ``<submission key>:<step>`` (the key is
``options.submission_key`` or this flow run's id), which the client looks up before posting. A
retried step, a retried flow run and a second run with the same key all find the job already
posted.

Waiting holds no process when a worker runs the deployment: the run suspends until the
``watch-jobs`` deployment sees the job finished and resumes it (``tasks/follow.py``); the re-run
re-uses every earlier step's persisted result, so nothing is uploaded or posted twice. A local run
(no deployment) polls in its own process. Events: ``conductor.job.submitted``,
``conductor.scouts.finished`` (with the estimate), ``conductor.task.downloaded`` (each task of
the full job as its files land), ``conductor.job.finished`` (with the job's instance-hours),
``conductor.outputs.downloaded``.

No ``from __future__ import annotations`` here: Prefect resolves the parameter models from the
annotations when it builds the form and when a worker loads the flow; postponed annotations would
leave it strings to resolve.
"""

from typing import Any

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from prefect_conductor.conductor_cloud.cost.budget import approval_reason, budget_for
from prefect_conductor.conductor_cloud.cost.estimate import Estimate
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.submission.payload import UploadEntry
from prefect_conductor.conductor_cloud.submission.prepare import (
    Checked,
    Packages,
    Planned,
    assemble,
    payloads,
    upload_entries,
)
from prefect_conductor.conductor_cloud.submission.preview_text import payload_markdown
from prefect_conductor.conductor_cloud.transfers.uploads import hash_files
from prefect_conductor.tasks.approve import ask_for_approval, local_stop_message
from prefect_conductor.tasks.chunk_frames import chunk_frames
from prefect_conductor.tasks.contact_sheet import scout_contact_sheet
from prefect_conductor.tasks.cost_estimate import (
    estimate_cost,
    measured_usage,
    task_frames,
    usage_table,
)
from prefect_conductor.tasks.download import (
    download_finished_tasks,
    download_folder_for,
    download_job_outputs,
)
from prefect_conductor.tasks.export_scene import export_scene
from prefect_conductor.tasks.fetch_catalog import fetch_catalog
from prefect_conductor.tasks.follow import RESUMABLE, await_job, can_suspend, job_finished
from prefect_conductor.tasks.job_events import OUTPUTS_DOWNLOADED, emit_job_event
from prefect_conductor.tasks.rerender import follow_with_rerenders
from prefect_conductor.tasks.resolve_packages import resolve_packages
from prefect_conductor.tasks.submit import full_submit, scout_submit, wait_for_tasks
from prefect_conductor.tasks.upload_assets import upload_assets
from prefect_conductor.tasks.validate import validate


def run_name() -> str:
    """``<title> <frames>`` for the flow-run list, e.g. ``shot010 lighting 1-10``."""
    parameters = flow_run.parameters
    job = parameters.get("job")
    data = job.model_dump() if isinstance(job, ConductorJob) else dict(job or {})
    frames = data.get("custom_frames") if data.get("use_custom_frames") else "image ranges"
    return f"{data.get('title', 'render')} {frames}"


def run_tags(job: ConductorJob) -> list[str]:
    """Searchable tags for the run and its tasks: project, host and scout mode."""
    return [f"project:{job.project or 'unset'}", "host:jobs", f"scout:{job.scout_mode}"]


def tag_this_run(extra: list[str]) -> None:
    """Add tags to the flow run itself (tags given at creation, by the host, are kept: the run
    as the engine read it at start has them, so one request, not a read and a write)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, tags=sorted({*flow_run.tags, *extra}))


def submission_key(options: RunOptions) -> str:
    """The duplicate-job guard's key: the caller's, else this flow run's id."""
    return options.submission_key or str(flow_run.id)


@flow(name="render-submit", flow_run_name=run_name, log_prints=False, persist_result=False)
def render_submit(
    job: ConductorJob,
    scene: SceneSource,
    options: RunOptions = RunOptions(),  # noqa: B008 - a frozen model, safe as a default
) -> Any:
    """Submit a Jobs scene to Conductor: scout frames first, then the rest.

    Args:
        job: The render job: what to render, on which machines, in which chunks.
        scene: Where the scene comes from: an export the host wrote, or a saved project.
        options: How to run: preview only, Conductor address, credentials block, polling.
    """
    logger = get_run_logger()
    tag_this_run(run_tags(job))
    # A run that can suspend is started again from the top when resumed: every step before a
    # wait re-uses its persisted result instead of running (and posting) again.
    kept = _resumable if can_suspend() else _as_is
    with tags(*run_tags(job)):
        # Each step takes the previous step's result (or waits for it), so the run's graph is the
        # pipeline in order and a retried step redoes its own work.
        exported = kept(export_scene)(scene, options.staging_dir, job.title)
        catalog = kept(fetch_catalog)(options, wait_for=[exported])
        checked: Checked = kept(validate)(job, exported, catalog)
        packages: Packages = kept(resolve_packages)(checked, catalog)
        planned: Planned = kept(chunk_frames)(checked, wait_for=[packages])
        prepared = assemble(checked, packages, planned)
        info = planned.plan.info
        owner = options.submitted_by or None
        key = submission_key(options)
        run_id = str(flow_run.id)
        if options.preview:
            uploads = upload_entries(hash_files(list(prepared.files)))
            bodies = payloads(
                prepared, uploads, owner=owner, submission_key=key, flow_run_id=run_id
            )
            create_markdown_artifact(
                payload_markdown(bodies, uploads),
                key="payload-preview",
                description="What would be sent",
            )
            logger.info("Preview only: nothing was uploaded or submitted")
            return {"preview": True, "info": info, "payloads": bodies}
        usage_rows: list[dict[str, Any]] = []
        entries: list[UploadEntry] = kept(upload_assets)(
            prepared.files, job.project, options, wait_for=[planned]
        )
        bodies = payloads(prepared, entries, owner=owner, submission_key=key, flow_run_id=run_id)
        create_markdown_artifact(
            payload_markdown(bodies, entries), key="payload-preview", description="What was sent"
        )
        submitted: dict[str, Any] = {}
        before_full: list[Any] = [entries]
        costs: dict[str, Any] = {}
        if "scout" in bodies:
            scout = kept(scout_submit)(
                bodies["scout"], f"{key}:scout", "scout", options, wait_for=[entries]
            )
            submitted["scout"] = scout
            waited: list[Any] = [scout]
            if can_suspend():
                await_job(scout.jid, options, options.scout_timeout_minutes)
            else:
                waited = [wait_for_tasks(scout.jid, options, wait_for=[scout])]
            costs = kept(estimate_cost)(
                scout.jid,
                task_frames(bodies["full"]["tasks_data"]) if "full" in bodies else [],
                job,
                [t.name for t in catalog.instance_types],
                options,
                wait_for=waited,
            )
            counts = job_finished(
                scout.jid,
                "scout",
                _title(bodies["scout"]),
                options,
                labels=costs,
                wait_for=[*waited, costs],
            )
            kept(scout_contact_sheet)(
                scout.jid, scene.export_path or scene.project_path, options, wait_for=[counts]
            )
            before_full = [scout, counts]
            usage_rows.append(_usage_row("scout", scout.jid, costs["usage"], None))
            usage_table(usage_rows)
            if "full" in bodies and not options.approved:
                stopped = _gate(job, costs, counts, scout.jid, key, submitted)
                if stopped is not None:
                    return stopped
        if "full" in bodies:
            submitted["full"] = kept(full_submit)(
                bodies["full"], f"{key}:full", "full", options, wait_for=before_full
            )
        result: dict[str, Any] = {
            "preview": False,
            "info": info,
            "jobs": {step: {"jid": j.jid, "url": j.dashboard_url} for step, j in submitted.items()},
            **({"estimate": costs["estimate"]} if costs else {}),
        }
        logger.info("Submitted: %s", result["jobs"])
        follow = options.follow == "yes" or (options.follow == "auto" and can_suspend())
        if follow and "full" in submitted:
            full = submitted["full"]
            estimated = Estimate.from_dict(costs["estimate"]) if costs else None
            if job.rerender_attempts:
                outputs = follow_with_rerenders(
                    full=full,
                    body=bodies["full"],
                    key=key,
                    job=job,
                    folder=download_folder_for(scene.export_path or scene.project_path),
                    scene_export=scene.export_path or None,
                    options=options,
                    scout_jid=submitted["scout"].jid if "scout" in submitted else "",
                    estimate=costs.get("estimate"),
                )
            else:
                outputs = _follow(full.jid, _title(bodies["full"]), scene, options, job, estimated)
            emit_job_event(
                OUTPUTS_DOWNLOADED,
                full.jid,
                _title(bodies["full"]),
                {k: outputs[k] for k in ("output_folder", "files", "bytes", "frames")},
            )
            result["outputs"] = outputs
            usage = outputs.get("usage") or measured_usage(full.jid, job)
            usage_rows.append(_usage_row("full", full.jid, usage, estimated))
            usage_table(usage_rows)
        return result


def _follow(
    jid: str,
    title: str,
    scene: SceneSource,
    options: RunOptions,
    job: ConductorJob,
    estimate: Estimate | None,
) -> dict[str, Any]:
    """Download each task's files as it succeeds, then check the whole job's frames.

    A local run waits in the download step, fetching each task as it succeeds; a deployed run
    downloads what has succeeded, suspends, and is resumed by the watcher when more tasks have
    succeeded or the job has finished (``tasks/follow.py``). The frame check needs the scene
    export file, so it runs for an ``export_path`` scene; a failed task ends the run Failed
    naming the job, the tasks and their frames (log tails in the run's logs). With
    ``rerender_attempts`` above 0, ``tasks/rerender.py`` follows instead. The job's
    instance-hours (and cost) ride in ``conductor.job.finished`` beside the estimate.
    """
    folder = download_folder_for(scene.export_path or scene.project_path)
    wait = 0.0 if can_suspend() else options.render_timeout_minutes * 60.0
    got = download_finished_tasks(jid, folder, title, wait, options.poll_seconds, options)
    await_job(jid, options, options.render_timeout_minutes, downloaded=got["tasks"])
    usage = measured_usage(jid, job)
    details: dict[str, Any] = {"usage": usage}
    if estimate is not None:
        details["estimate"] = estimate.as_dict()
    job_finished(jid, "full", title, options, labels=details)
    outputs = download_job_outputs(
        jid, folder, scene.export_path or None, [], 0.0, options.poll_seconds, options
    )
    return {**outputs, "usage": usage}


def _title(body: dict[str, Any]) -> str:
    return str(body.get("job_title") or "")


def _gate(
    job: ConductorJob,
    costs: dict[str, Any],
    counts: dict[str, int],
    scout_jid: str,
    key: str,
    submitted: dict[str, Any],
) -> State | None:
    """Stop before the full job unless it may go on: within budget and approval auto, or a
    person approved it (a deployed run waits suspended for that); None means go on."""
    estimate = Estimate.from_dict(costs["estimate"])
    budget = budget_for(job.budget, job.project, get_settings().project_budgets)
    reason = approval_reason(job.approval, budget, estimate)
    if reason is None:
        return None
    if not can_suspend():
        return _stopped(local_stop_message(reason, key), submitted, needs_approval=True)
    description = (
        f"Scout frames rendered: {counts['success']} of {counts['total']} tasks. The full job of"
        f" '{job.title}' waits for approval: {reason}.\n\n{estimate.markdown()}\n"
        "Approve to submit the remaining frames, or untick approve and give a reason to stop."
    )
    answer = ask_for_approval(job, description, scout_jid)
    if not answer.approve:
        return _stopped(
            f"rejected: {answer.reason or 'no reason given'}; the remaining frames were not"
            " submitted",
            submitted,
        )
    return None


def _usage_row(
    step: str, jid: str, usage: dict[str, Any], estimate: Estimate | None
) -> dict[str, Any]:
    """One row of the run's job-usage table: the job's actual figures beside the estimate."""
    return {
        "step": step,
        "job": jid,
        "timed tasks": usage["timed_tasks"],
        "instance-hours": round(usage["instance_hours"], 4),
        "estimated instance-hours": (
            ""
            if estimate is None or estimate.instance_hours is None
            else round(estimate.instance_hours, 4)
        ),
        "cost": "" if usage["cost"] is None else usage["cost"],
        "estimated cost": (
            "" if estimate is None or estimate.cost is None else round(estimate.cost, 4)
        ),
        "resolution (s)": usage["resolution_seconds"],
    }


def _resumable(step: Any) -> Any:
    """The task with its result persisted and cached for this flow run (``follow.RESUMABLE``)."""
    return step.with_options(**RESUMABLE)


def _as_is(step: Any) -> Any:
    return step


def _stopped(message: str, submitted: dict[str, Any], needs_approval: bool = False) -> State:
    """End the run as Cancelled with the reason; what was already submitted stays listed."""
    get_run_logger().warning(message)
    jobs = {step: {"jid": j.jid, "url": j.dashboard_url} for step, j in submitted.items()}
    data = {"preview": False, "jobs": jobs, "stopped": message, "needs_approval": needs_approval}
    return Cancelled(message=message, data=data)
