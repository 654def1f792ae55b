"""``prefect-conductor demo``: the whole chain on the sample scene against a local sandbox.

Starts a Conductor sandbox on 127.0.0.1 in a temporary folder, points this process's Conductor
settings at it, and runs the ``render-submit`` flow on ``examples/shot010`` (custom frames 1-10,
chunk size 2, scout frames 3,8) on the same Prefect server ``submit`` uses, then downloads each
job's stand-in frames (the sandbox renders them at the scene's Save As) and checks them. Nothing
leaves the machine, and the temporary folder is removed at the end.

It ends somewhere a person can look: the flow run's Prefect UI link is printed (the per-user
server stays up for it), and with ``keep`` the sandbox and the downloaded frames stay too, so the
job links open its job page (tasks, states, frames, outputs), until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The ``prefect_conductor`` package folder (this module is in its ``cli/``)."""
SANDBOX_SENTENCE = (
    "The sandbox is a local stand-in for Conductor's API on 127.0.0.1: it runs each task's"
    " command on a stand-in render node that writes small sample frames; nothing leaves this"
    " machine."
)


def examples_dir() -> Path:
    """The sample scene: in the checkout (editable install) or inside the installed wheel."""
    for candidate in (PACKAGE_ROOT.parent / "examples", PACKAGE_ROOT / "examples"):
        if (candidate / "shot010" / "job.yaml").is_file():
            return candidate
    raise FileNotFoundError("the sample scene examples/shot010 is not installed")


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the in-process flow run, and put the old values back."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_for_ctrl_c(echo: Callable[[str], None]) -> None:
    """Block until Ctrl-C (SIGINT); the caller's context managers then stop everything."""
    echo("Keeping the sandbox running for its job pages; press Ctrl-C to stop.")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Our own handlers: a library may have replaced Python's SIGINT handler, and SIGTERM (kill,
    # timeout) must clean up as Ctrl-C does.
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        echo("Stopping.")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def sample_copy(sample: Path, folder: Path) -> Path:
    """A copy of the sample scene with its render package as the host's exporter writes it
    (Save As and frame ranges of the copy's images, absolute), so the sandbox renders it."""
    from prefect_conductor.conductor_cloud.job.loaders import load_scene
    from prefect_conductor.sandbox.node.package import write_package

    shutil.copytree(sample, folder)
    scene = load_scene(folder / "scene_export.json")
    write_package(Path(scene.render_package), scene)
    return folder


def run_demo(
    echo: Callable[[str], None] = print, *, keep: bool = False, quiet_tracebacks: bool = False
) -> dict[str, Any]:
    """Run the demo and return the flow's result; ``echo`` receives progress lines.

    The flow runs on the same Prefect server as ``submit``
    (:mod:`prefect_conductor.local_server.prefect_api`: the per-user local server unless
    PREFECT_API_URL is set), entered before the demo's own
    temporary per-user folder is set, so the server started here is the one later commands reuse.
    ``keep`` keeps the sandbox up until Ctrl-C. The temporary folder (sandbox data, caches) is
    removed in every case.
    """
    work = Path(tempfile.mkdtemp(prefix="prefect-conductor-demo-"))
    try:
        return _run_demo(echo, keep, quiet_tracebacks, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_demo(
    echo: Callable[[str], None], keep: bool, quiet_tracebacks: bool, work: Path
) -> dict[str, Any]:
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
    from prefect_conductor.local_server.prefect_api import prefect_api

    shot = sample_copy(examples_dir() / "shot010", work / "shot010")
    started = time.monotonic()
    settings = {"PREFECT_CONDUCTOR_HOME": str(work / "home")}
    with (
        prefect_api(echo, quiet_tracebacks=quiet_tracebacks) as api,
        SandboxServer(work / "sandbox", task_seconds=0.5) as server,
        environment(CONDUCTOR_URL=server.url, CONDUCTOR_API_KEY=server.api_key, **settings),
    ):
        echo(f"Conductor sandbox on {server.url}")
        echo(SANDBOX_SENTENCE)
        job = load_job(shot / "job.yaml")
        echo(f"Job '{job.title}' from {shot / 'job.yaml'}")
        from prefect_conductor.flows.render_submit import render_submit

        state: Any = render_submit(
            job=job,
            scene=SceneSource(export_path=str(shot / "scene_export.json")),
            options=RunOptions(poll_seconds=0.25, submitted_by="demo"),
            return_state=True,
        )
        result = cast(dict[str, Any], state.result())
        flow_run_id = state.state_details.flow_run_id
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        stored = handle.jobs()
        uploads = handle.uploads()
        downloaded = download_outputs(handle, result, shot, work / "downloads")
        handle.close()
        echo(f"Frames Info: {result['info']}")
        for step, job_info in result["jobs"].items():
            record = next(j for j in stored if j["jid"] == job_info["jid"])
            frames = ", ".join(t["frames"] for t in record["tasks_data"])
            count = len(record["tasks_data"])
            echo(f"{step} job {job_info['jid']}: {count} tasks ({frames}) -> {job_info['url']}")
        echo(f"{len(uploads)} files uploaded to the sandbox; {len(stored)} jobs in all")
        for line in downloaded:
            echo(line)
        echo(f"Done in {time.monotonic() - started:.1f} s")
        link = api.flow_run_url(flow_run_id)
        echo(f"Prefect flow run: {link or f'{flow_run_id} (Prefect temporary server, now gone)'}")
        if keep:
            wait_for_ctrl_c(echo)
        else:
            echo(
                "The sandbox and the downloaded frames go now; `prefect-conductor demo --keep`"
                " keeps them until Ctrl-C."
            )
    if api.local_server:
        echo(
            f"The Prefect server stays up for its links: {api.ui_url}"
            " (stop it with `prefect-conductor server stop`)"
        )
    return result


def download_outputs(
    handle: SandboxHandle, result: dict[str, Any], shot: Path, folder: Path
) -> list[str]:
    """After Submit: the sandbox's stand-in renderer wrote each frame at its image's Save As;
    download each job, report it, check its frames. One line per job."""
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.transfers.job_outputs import fetch_outputs
    from prefect_conductor.conductor_cloud.transfers.output_frames import load_scene_images

    scene = load_scene_images(shot / "scene_export.json")
    lines = []
    with ConductorClient() as client:
        for step, job_info in result["jobs"].items():
            outputs = fetch_outputs(
                client, job_info["jid"], folder, scene=scene, wait_seconds=60, poll_seconds=0.25
            )
            frames = ", ".join(f"{c.name} {len(c.expected)}" for c in outputs.checks)
            lines.append(
                f"{step} job {job_info['jid']}: {outputs.download.stats.files_total} files"
                f" downloaded to {outputs.download.folder}; frames checked: {frames}"
            )
    return lines
