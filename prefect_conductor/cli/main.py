"""The ``prefect-conductor`` command: preview, submit, frames, sandbox, demo and friends.

Every failure ends as one line on stderr and a non-zero exit, never a traceback: commands raise
:class:`SubmitterError` (exit code from the error) and :func:`main` renders it; anything else is
one line and exit 1. ``--debug`` shows the traceback instead.

Prefect is imported only by the commands that run flows (``submit``, ``demo``), so ``--help``,
``frames`` and ``preview`` stay fast and never start a server.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_conductor.conductor_cloud.errors import InputFileError, SubmitterError, UserError

if TYPE_CHECKING:
    from prefect_conductor.conductor_cloud.transfers.job_outputs import TasksFailed

app = typer.Typer(
    name="prefect-conductor",
    help="Submit Jobs scenes to Conductor's cloud render farm through Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: the rich panels label every flag "<bool>" (even --help), as if it took a value.
    rich_markup_mode=None,
)
server_app = typer.Typer(
    help="The local Prefect server the commands use when PREFECT_API_URL is not set.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(server_app, name="server")
studio_app = typer.Typer(
    help="The studio stack on loopback: Redis, PostgreSQL, Prefect in N API processes, N workers.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(studio_app, name="studio")

_options: dict[str, bool] = {"debug": False}
"""Global options, set by :func:`options` before any command runs."""


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of a failure.")
    ] = False,
) -> None:
    """Submit Jobs scenes to Conductor's cloud render farm through Prefect flows."""
    _options["debug"] = debug


def echo_err(line: str) -> None:
    """A status line on stderr, so stdout keeps only the command's result."""
    typer.echo(line, err=True)


# Commands are registered below by the modules that own them (keep each command small: parse the
# arguments, call into the package, print). Register new commands with @app.command().


def scene_for(job_file: Path, scene: Path | None) -> Path:
    """The scene export to use: the one given, else ``scene_export.json`` beside the job file."""
    if scene is not None:
        return scene
    beside = job_file.parent / "scene_export.json"
    if beside.is_file():
        return beside
    raise UserError(f"--scene: no scene export given and none at {beside}")


@app.command()
def submit(
    job_files: Annotated[
        list[Path],
        typer.Argument(
            metavar="JOB_FILE", help="Job files (YAML or JSON), or folders of YAML job files."
        ),
    ],
    scene: Annotated[
        Path | None,
        typer.Option(help="The scene export JSON; default scene_export.json beside the job."),
    ] = None,
    preview_only: Annotated[
        bool, typer.Option("--preview", help="Stop before uploading or submitting.")
    ] = False,
    credentials_block: Annotated[
        str | None,
        typer.Option(
            help="A ConductorCredentials block (key and URL), or a Secret block holding the key."
        ),
    ] = None,
    submission_key: Annotated[
        str | None, typer.Option(help="Reuse to finish an interrupted submission, never twice.")
    ] = None,
    poll_seconds: Annotated[
        float, typer.Option(help="Interval between looks at the scout tasks (steady).")
    ] = 10.0,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve",
            help="Post the full job after the scouts without the budget or approval gate (a"
            " person approved it); with the --submission-key of a run that stopped for approval,"
            " the scout job is re-used and only the full job is posted.",
        ),
    ] = False,
    deployment: Annotated[
        str | None,
        typer.Option(
            help="Start one run of this deployment per job file (e.g."
            " render-submit/submit-to-conductor) and return; the studio's workers run them."
        ),
    ] = None,
    max_concurrent: Annotated[
        int, typer.Option(min=1, max=32, help="Several job files: how many run here at once.")
    ] = 4,
    work_queue: Annotated[
        str, typer.Option(help="--deployment: the work queue (the studio's low-priority one).")
    ] = "batch",
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Wait for the render, download every frame and check it; failed frames are"
            " rendered again as the job's rerender_attempts says.",
        ),
    ] = False,
) -> None:
    """Run the render-submit flow (a local Prefect server unless PREFECT_API_URL is set).

    Several job files (or a folder): one run each, as a submit-batch run here, or with
    --deployment one run of the deployment each, started and not waited for.
    """
    from prefect_conductor.conductor_cloud.job.job_files import expand_job_files

    files = expand_job_files(job_files)
    if not deployment:  # runs here need the key here; a deployment's runs find it on the workers
        require_credentials(credentials_block)
    if deployment or len(files) > 1 or job_files[0].is_dir():
        if scene is not None:
            raise UserError(
                "--scene: give it with one job file; in a batch each job's scene"
                " export is the scene_export.json beside it"
            )
        from prefect_conductor.cli.batch import start_batch

        start_batch(
            files,
            deployment=deployment or "",
            max_concurrent=max_concurrent,
            work_queue=work_queue,
            options=dict(
                preview=preview_only,
                credentials_block=credentials_block or "",
                submission_key=submission_key or "",
                poll_seconds=poll_seconds,
                approved=approve,
                **({"follow": "yes"} if follow else {}),
            ),
            echo=typer.echo,
            echo_err=echo_err,
            quiet_tracebacks=not _options["debug"],
        )
        return
    _submit_one(
        files[0],
        scene,
        preview_only,
        credentials_block,
        submission_key,
        poll_seconds,
        follow,
        approve,
    )


def require_credentials(credentials_block: str | None) -> None:
    """A Conductor key at hand, or a block named, before a server or a flow run starts."""
    from prefect_conductor.conductor_cloud.api.auth import ApiKeyError, api_key_from_env

    if not credentials_block and api_key_from_env() is None:
        raise ApiKeyError(
            "no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH, or pass"
            " --credentials-block NAME"
        )


def _submit_one(
    job_file: Path,
    scene: Path | None,
    preview_only: bool,
    credentials_block: str | None,
    submission_key: str | None,
    poll_seconds: float,
    follow: bool = False,
    approve: bool = False,
) -> None:
    """One job file, run here with upload progress bars (the artist's submit).

    A run that stopped (Cancelled: approval needed, refused or not given in time) prints the jobs
    it posted and ends with its one line and exit code 6 (:class:`RunStopped`).
    """
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
    from prefect_conductor.local_server.prefect_api import prefect_api

    job = load_job(job_file)
    scene_path = scene_for(job_file, scene).resolve()
    with prefect_api(echo_err, quiet_tracebacks=not _options["debug"]) as api:
        from prefect.states import State

        from prefect_conductor.cli.progress import rich_progress
        from prefect_conductor.flows.render_submit import render_submit
        from prefect_conductor.tasks.upload_assets import listening

        with rich_progress() as show, listening(show):
            state: State[Any] = render_submit(  # type: ignore[assignment]
                job=job,
                scene=SceneSource(export_path=str(scene_path)),
                options=RunOptions(
                    preview=preview_only,
                    credentials_block=credentials_block or "",
                    submission_key=submission_key or "",
                    poll_seconds=poll_seconds,
                    approved=approve,
                    follow="yes" if follow else "auto",
                ),
                return_state=True,
            )
        run_url = api.flow_run_url(state.state_details.flow_run_id)
        if state.is_cancelled() and state.message:
            _report_stop(state, job_file, run_url)
        result: dict[str, Any] = state.result()  # raises the run's error, if it failed
    typer.echo(f"Frames Info: {result['info']}")
    if result.get("preview"):
        from prefect_conductor.conductor_cloud.submission.preview_text import job_text

        for step, body in result["payloads"].items():
            typer.echo(job_text(step, body))
        typer.echo("Preview only: nothing was uploaded or submitted.")
    else:
        for step, info in result["jobs"].items():
            typer.echo(f"{step} job {info['jid']}: {info['url']}")
        if result.get("estimate"):
            from prefect_conductor.conductor_cloud.cost.estimate import Estimate

            typer.echo(Estimate.from_dict(result["estimate"]).line())
        for row in result.get("outputs", {}).get("attempts", []):
            typer.echo(
                f"{row['attempt']} job {row['job']}: frames {row['frames']}: {row['outcome']}"
            )
        if "outputs" in result:
            typer.echo(f"Frames: {result['outputs']['output_folder']}")
    if run_url:
        typer.echo(f"Flow run: {run_url}")


class RunStopped(SubmitterError):
    """The run stopped before the full job on purpose (approval needed, refused, not given)."""

    exit_code = 6


def _report_stop(state: Any, job_file: Path, run_url: str | None) -> None:
    """Print the jobs a stopped run posted, then raise its one line as :class:`RunStopped`."""
    import shlex

    data = state.result(raise_on_failure=False)
    jobs = data.get("jobs", {}) if isinstance(data, dict) else {}
    for step, info in jobs.items():
        typer.echo(f"{step} job {info['jid']}: {info['url']}")
    if run_url:
        typer.echo(f"Flow run: {run_url}")
    raise RunStopped(str(state.message).replace("JOB_FILE", shlex.quote(str(job_file))))


@app.command()
def params(
    job_file: Annotated[Path, typer.Argument(help="The job file (YAML or JSON).")],
    scene: Annotated[
        Path | None,
        typer.Option(help="The scene export JSON; default scene_export.json beside the job."),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(help="A saved project to export on the worker instead of a scene export."),
    ] = None,
    credentials_block: Annotated[
        str, typer.Option(help="Name of a ConductorCredentials (or Secret) block.")
    ] = "",
    preview_only: Annotated[
        bool, typer.Option("--preview", help="The run stops before uploading or submitting.")
    ] = False,
) -> None:
    """Print a deployment run's parameters as JSON, for `prefect deployment run --params`."""
    from prefect_conductor.cli.deployment_params import deployment_parameters

    document = deployment_parameters(
        job_file,
        scene=None if project else scene_for(job_file, scene),
        project=project,
        credentials_block=credentials_block,
        preview=preview_only,
    )
    typer.echo(document)


@app.command()
def refresh(
    catalog: Annotated[
        Path | None, typer.Option(help="Where to write the catalogue; default the user cache.")
    ] = None,
) -> None:
    """Fetch projects, instance types and packages from Conductor into the catalogue cache."""
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.api.refresh import refresh_catalog

    with ConductorClient() as client:
        fetched, path = refresh_catalog(client, catalog)
    typer.echo(
        f"{len(fetched.projects)} projects, {len(fetched.instance_types)} instance types,"
        f" {len(fetched.packages)} packages from {fetched.source_url} -> {path}"
    )


@app.command()
def demo(
    keep: Annotated[
        bool,
        typer.Option(
            "--keep", help="Run on a Prefect server with its UI; keep it and the sandbox up."
        ),
    ] = False,
) -> None:
    """Start a local sandbox and run the whole chain on the sample scene, scouting on."""
    from prefect_conductor.cli.demo import run_demo

    run_demo(typer.echo, keep=keep, quiet_tracebacks=not _options["debug"])


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8085,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the sandbox's state and uploads (default: PREFECT_CONDUCTOR_HOME/"
            "sandbox)."
        ),
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Faults to inject: rules 'METHOD PATH=ACTION[:ARG][xTIMES]' joined by ';'."
            " PATH is a glob; ACTION is a status code (ARG: Retry-After seconds), delay (ARG:"
            " seconds), drop_before or drop_after (store, then close without answering),"
            " drop_mid (close half-way through the answer) or corrupt (flip a byte); TIMES"
            " defaults to 1, x0 is forever. Example: 'POST /jobs/=drop_after;"
            "GET /api/v1/projects/=503x2;PUT *=delay:3'."
        ),
    ] = "",
    task_seconds: Annotated[
        float, typer.Option(help="Seconds a task stays pending before a render node takes it.")
    ] = 2.0,
    instances: Annotated[
        int,
        typer.Option(min=1, max=64, help="Stand-in render nodes running tasks at once."),
    ] = 2,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
) -> None:
    """Serve a local Conductor-compatible API (loopback only) for trying and testing.

    Each task's command runs on a stand-in render node (the job's uploads laid out, a stand-in
    cnode that writes real frames). State (jobs, uploads, tokens) lives in the data folder and
    survives a restart. Tests steer it through /_sandbox/ (faults, config, state, reset,
    release/<jid>).
    """
    from prefect_conductor.conductor_cloud.settings import get_settings
    from prefect_conductor.sandbox.server import SandboxServer

    # Absolute, so the printed key path works from any folder (a worker started elsewhere);
    # the per-user folder by default, so no state lands in whatever folder the command ran in.
    folder = (data if data is not None else get_settings().home / "sandbox").absolute()
    try:
        server = SandboxServer(
            folder,
            port=port,
            faults=faults,
            task_seconds=task_seconds,
            host=host,
            instances=instances,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    typer.echo(f"Conductor sandbox on {server.url} (data in {folder})")
    typer.echo(f"  export CONDUCTOR_URL={server.url}")
    typer.echo(f"  export CONDUCTOR_API_KEY_PATH={server.api_key_path}")
    server.serve_forever()


@app.command()
def frames(
    spec: Annotated[str, typer.Argument(help="Frames, for example 1-10, 1-100x3 or 3,8.")],
    chunk_size: Annotated[int, typer.Option(help="Frames per task.")] = 5,
    scout: Annotated[str, typer.Option(help="Scout frames: a spec, auto:N or fml:N.")] = "",
    tiles: Annotated[int, typer.Option(help="Tiles per frame.")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print frames, chunks and scouts.")
    ] = False,
) -> None:
    """Print the Frames Info line for a frame spec, as the host's Frames Info shows it."""

    from prefect_conductor.conductor_cloud.job.frames import (
        FrameList,
        parse_frame_spec,
        parse_scout_spec,
        plan_frames,
        resolve_scout,
    )

    all_frames = parse_frame_spec(spec, field="frames")
    scouts = resolve_scout(parse_scout_spec(scout, field="--scout"), all_frames) if scout else None
    plan = plan_frames(all_frames, chunk_size, scout=scouts, tiles=tiles)
    outside = FrameList.from_iterable(f for f in scouts or () if f not in all_frames)
    if outside:
        typer.echo(
            f"warning: --scout: scout frames {outside} are not among the frames {all_frames};"
            " they are ignored",
            err=True,
        )
    if not as_json:
        typer.echo(plan.info)
        return
    document = {
        "frames": plan.frames.spec,
        "chunks": [chunk.spec for chunk in plan.chunks],
        "scout_chunks": sorted(plan.scout_chunk_indexes),
        "info": plan.info,
    }
    typer.echo(json.dumps(document))


@app.command()
def preview(
    job_file: Annotated[Path, typer.Argument(help="The job file (YAML or JSON).")],
    scene: Annotated[
        Path | None,
        typer.Option(help="The scene export JSON; default scene_export.json beside the job."),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(help="A catalogue file; default the cache written by `refresh`."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print exactly what `submit` would send (payloads, upload list, plan); send nothing."""
    from prefect_conductor.conductor_cloud.job.catalog import load_catalog
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
    from prefect_conductor.conductor_cloud.submission.prepare import build_preview
    from prefect_conductor.conductor_cloud.transfers.staging import export_scene

    job = load_job(job_file)
    catalogue = load_catalog(catalog)
    # Staged exactly as submit stages it, so the render package path and md5 are the same.
    scene_export = export_scene(SceneSource(export_path=str(scene_for(job_file, scene).resolve())))
    result = build_preview(job, scene_export, catalogue)
    from dataclasses import replace

    from prefect_conductor.cli.preview_estimate import estimate_line

    full = result.prepared.steps.get("full") or ()
    result = replace(result, estimate=estimate_line(job, [len(t.frames) for t in full]))
    typer.echo(result.to_json() if as_json else result.to_text())


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server (if it is not running) and print its UI's address."""
    from prefect_conductor.local_server.server import LocalServer

    state = LocalServer.for_user().ensure(echo_err)
    typer.echo(f"Prefect server: {state.ui_url} (pid {state.pid})")


@server_app.command("status")
def server_status() -> None:
    """Say whether the local Prefect server runs, and where; exit 1 if it does not."""
    from prefect_conductor.local_server.server import LocalServer

    server = LocalServer.for_user()
    state = server.running()
    if state is None:
        typer.echo(f"No local Prefect server is running (state in {server.root}).")
        raise typer.Exit(1)
    typer.echo(f"Prefect server: {state.ui_url} (pid {state.pid}, state in {server.root})")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server and its idle supervisor."""
    from prefect_conductor.local_server.server import LocalServer

    state = LocalServer.for_user().stop(echo_err)
    if state is None:
        typer.echo("No local Prefect server was running.")
    else:
        typer.echo(f"Stopped the local Prefect server at {state.ui_url} (pid {state.pid}).")


# After Submit: follow the render, download the frames --------------------------------------------


@studio_app.command("up")
def studio_up(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Process workers to start.")] = 4,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Flow runs each worker runs at once, at most.")
    ] = 4,
    nice: Annotated[
        int,
        typer.Option(
            min=0,
            max=19,
            help="How much lower the workers' CPU priority is than the server's (0: equal).",
        ),
    ] = 10,
    api_processes: Annotated[
        int, typer.Option(min=1, max=32, help="Prefect API processes behind the one port.")
    ] = 2,
) -> None:
    """Start Redis, PostgreSQL, the Prefect API and services, the pool, deployments, workers."""
    from prefect_conductor.studio.stack import up

    up(workers, typer.echo, api_processes=api_processes, runs_per_worker=limit, worker_nice=nice)


@studio_app.command("down")
def studio_down() -> None:
    """Stop the workers, Prefect, Redis and PostgreSQL; nothing is left running."""
    from prefect_conductor.studio.stack import down

    down(typer.echo)


@studio_app.command("restart")
def studio_restart() -> None:
    """Restart Prefect's API processes and services; held concurrency slots stay held."""
    from prefect_conductor.studio.stack import restart

    restart(typer.echo)


@studio_app.command("status")
def studio_status() -> None:
    """Every process of the studio stack with its role, and the API address."""
    from prefect_conductor.studio.stack import status as stack_status

    typer.echo(stack_status())


@app.command()
def status(jid: Annotated[str, typer.Argument(help="The Conductor job id, e.g. 00042.")]) -> None:
    """Print a job's tasks as a table: task id, frames and status.

    Exits non-zero when tasks failed, naming them and printing the end of each failed log.
    """
    from rich.console import Console

    from prefect_conductor.cli.download_display import task_table
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.transfers.job_outputs import (
        TasksFailed,
        raise_for_failed_tasks,
        task_states,
    )

    job_id = _job_id(jid)
    with ConductorClient() as client:
        states = task_states(client, job_id)
        Console().print(task_table(job_id, states))
        try:
            raise_for_failed_tasks(client, job_id, states)
        except TasksFailed as error:
            raise _failed_tasks(error) from None


@app.command()
def wait(
    jid: Annotated[str, typer.Argument(help="The Conductor job id, e.g. 00042.")],
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="Give up after this many seconds (exit 5); default: no limit."),
    ] = None,
    poll_seconds: Annotated[float, typer.Option(min=0.01, help="First interval between looks.")] = (
        10.0
    ),
) -> None:
    """Wait until every task of a job has settled.

    Exits 0 when every task rendered, 4 when some failed, were killed or were left preempted
    (one line naming them and their frames), 5 when the timeout ran out (one line).
    """
    from prefect_conductor.cli.job_wait import wait_for_job
    from prefect_conductor.conductor_cloud.api.client import ConductorClient

    job_id = _job_id(jid)
    with ConductorClient() as client:
        line = wait_for_job(
            client, job_id, timeout_seconds=timeout, poll_seconds=poll_seconds, say=echo_err
        )
    typer.echo(line)


def _failed_tasks(error: TasksFailed) -> typer.Exit:
    """Print a TasksFailed: its one line, then each failed task's log tail; the Exit to raise."""
    typer.echo(f"error: {error}", err=True)
    for line in error.log_lines():
        typer.echo(f"  {line}", err=True)
    return typer.Exit(error.exit_code)


def _writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` and check that files can be made in it, or one line naming ``option``."""
    import tempfile

    from prefect_conductor.conductor_cloud.errors import UserError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserError(f"{option}: cannot write in {folder}: {error.strerror or error}") from None


def _job_id(text: str) -> str:
    """A jid as Conductor writes it (5 digits), or one line naming the argument."""
    from prefect_conductor.conductor_cloud.transfers.job_outputs import job_id

    return job_id(text, "JID")


@app.command()
def download(
    jid: Annotated[str, typer.Argument(help="The Conductor job id, e.g. 00042.")],
    output: Annotated[
        Path | None,
        typer.Option(help="Download into OUTPUT/<jid> instead of the job's output folder."),
    ] = None,
    scene: Annotated[
        Path | None,
        typer.Option(help="The scene export JSON: check every image's frames after download."),
    ] = None,
    images: Annotated[
        list[str] | None,
        typer.Option("--images", help="Image item paths to check (repeat; default: all)."),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds to wait for unfinished tasks (0: do not wait; with --follow: no limit)."
        ),
    ] = 0.0,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Wait for the job, downloading each task's files as it succeeds (a line each).",
        ),
    ] = False,
    poll_seconds: Annotated[float, typer.Option(help="First interval between checks.")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Files at once.")] = 4,
) -> None:
    """Download a job's rendered files (resumable), report them, then check the frames.

    Each task's files are fetched as soon as the task succeeds; with --follow the command waits
    for the whole job and prints a line per task downloaded. Files already on disk with
    Conductor's md5 are not fetched again, so Ctrl-C and running the same command again resumes.
    Exits non-zero, one line per problem, when tasks failed, frames are missing or the job did
    not finish in time.
    """
    from rich.console import Console

    from prefect_conductor.cli.download_display import download_bar, summary_line, task_line
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.settings import get_settings
    from prefect_conductor.conductor_cloud.transfers.job_outputs import TasksFailed, fetch_outputs
    from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
    from prefect_conductor.conductor_cloud.transfers.output_frames import (
        FramesMissing,
        load_scene_images,
    )

    job_id = _job_id(jid)
    if output is not None:
        _writable_folder(output, "--output")
    scene_export = load_scene_images(scene) if scene is not None else None
    console = Console(stderr=True)
    try:
        with (
            ConductorClient() as client,
            Md5Cache(get_settings().md5_cache_path) as cache,
            download_bar(console) as bar,
        ):
            result = fetch_outputs(
                client,
                job_id,
                output,
                scene=scene_export,
                images=images or (),
                wait_seconds=math.inf if follow and wait <= 0 else wait,
                poll_seconds=poll_seconds,
                on_listed=bar.listed,
                on_progress=bar.update,
                on_task=(lambda done: typer.echo(task_line(job_id, done))) if follow else None,
                cache=cache,
                workers=workers,
            )
    except TasksFailed as error:
        raise _failed_tasks(error) from None
    except FramesMissing as error:
        for problem in error.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("stopped: run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"job {job_id}: {summary_line(result.download.stats)} -> {result.download.folder}")
    for check in result.checks:
        typer.echo(f"{check.name}: {len(check.expected)} frames ok")


def main() -> None:
    """Console entry point: every failure ends in one line on stderr and a non-zero exit."""
    try:
        app()
    except InputFileError as error:
        if _options["debug"]:
            traceback.print_exc()
        for problem in error.problems or [str(error)]:
            typer.echo(f"error: {problem}", err=True)
        sys.exit(error.exit_code)
    except RunStopped as error:  # on purpose, not a fault: its own word, still non-zero
        typer.echo(f"stopped: {error}", err=True)
        sys.exit(error.exit_code)
    except SubmitterError as error:
        if _options["debug"]:
            traceback.print_exc()
        typer.echo(f"error: {error}", err=True)
        sys.exit(error.exit_code)
    except Exception as error:  # an unexpected failure: still one line, unless --debug
        if _options["debug"]:
            traceback.print_exc()
        message = " ".join(str(error).split()) or "no message"
        typer.echo(f"error: {type(error).__name__}: {message}", err=True)
        sys.exit(1)
