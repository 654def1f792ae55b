"""``prefect-conductor demo``: the whole chain on the sample scene against a local sandbox.

Starts a Conductor sandbox on 127.0.0.1 in a temporary folder, points this process's Conductor
settings at it, and runs the ``render-submit`` flow on ``examples/shot010`` (custom frames 1-10,
chunk size 2, scout frames 3,8) on Prefect's local backend. Nothing leaves the machine, and the
temporary folder is removed at the end.

It ends somewhere a person can look: the job links open the sandbox's job page (tasks, states,
frames, outputs) and the flow run's Prefect UI link is printed. With ``keep`` a Prefect server with
its UI runs the flow, and both it and the sandbox stay up until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

PACKAGE_ROOT = Path(__file__).resolve().parent
SANDBOX_SENTENCE = (
    "The sandbox is a local stand-in for Conductor's API on 127.0.0.1: it records jobs and"
    " pretends to run their tasks; nothing is rendered and nothing leaves this machine."
)
SERVER_START_SECONDS = 180.0


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


@contextmanager
def prefect_ui_server(home: Path) -> Iterator[str]:
    """``prefect server start`` (API and UI) on a free loopback port; yield the API URL.

    PREFECT_SERVER_API_HOST/PORT are set so the UI talks to this port, not 4200. Stopped with
    SIGINT to the process group it started (then killed if it lingers).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_UI_ENABLED")
    }
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
    )
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        import httpx

        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prefect server exited; see {home / 'server.log'}")
            try:
                if httpx.get(f"{api}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.3)
        yield api
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(15)


def flow_run_link(api_url: str | None, flow_run_id: object) -> str:
    """The flow run's page in the Prefect UI (served beside the API), or just its id when the
    run went to Prefect's local backend, which serves no UI once the demo exits."""
    if not api_url:
        return f"{flow_run_id} (Prefect's local backend)"
    return f"{api_url.rstrip('/').removesuffix('/api')}/runs/flow-run/{flow_run_id}"


def wait_for_ctrl_c(echo: Callable[[str], None]) -> None:
    """Block until Ctrl-C (SIGINT); the caller's context managers then stop everything."""
    echo("Keeping the sandbox and the Prefect UI running; press Ctrl-C to stop.")

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


def run_demo(echo: Callable[[str], None] = print, keep: bool = False) -> dict[str, Any]:
    """Run the demo and return the flow's result; ``echo`` receives progress lines.

    ``keep``: run on a Prefect server with its UI and keep it and the sandbox up until Ctrl-C.
    The temporary folder (sandbox data, Prefect home, caches) is removed in every case.
    """
    work = Path(tempfile.mkdtemp(prefix="prefect-conductor-demo-"))
    try:
        return _run_demo(echo, keep, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_demo(echo: Callable[[str], None], keep: bool, work: Path) -> dict[str, Any]:
    from contextlib import nullcontext

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_conductor.conductor_cloud.loaders import load_job
    from prefect_conductor.conductor_cloud.run_parameters import RunOptions, SceneSource

    shot = examples_dir() / "shot010"
    started = time.monotonic()
    settings = {
        "PREFECT_CONDUCTOR_HOME": str(work / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get(
            "PREFECT_SERVER_ANALYTICS_ENABLED", "false"
        ),
    }
    with (
        SandboxServer(work / "sandbox", task_seconds=0.5) as server,
        environment(CONDUCTOR_URL=server.url, CONDUCTOR_API_KEY=server.api_key, **settings),
    ):
        echo(f"Conductor sandbox on {server.url}")
        echo(SANDBOX_SENTENCE)
        job = load_job(shot / "job.yaml")
        if keep:
            echo("Starting a Prefect server with its UI...")
            ui_server: Any = prefect_ui_server(work / "prefect-home")
        else:
            echo(f"Job '{job.title}' from {shot / 'job.yaml'}; starting Prefect's local backend...")
            ui_server = nullcontext(None)
        with ui_server as api_url:
            overrides = temporary_settings({PREFECT_API_URL: api_url}) if api_url else nullcontext()
            with overrides:
                from prefect.settings import get_current_settings

                from prefect_conductor.flows.render_submit import render_submit

                state: Any = render_submit(
                    job=job,
                    scene=SceneSource(export_path=str(shot / "scene_export.json")),
                    options=RunOptions(poll_seconds=0.25, submitted_by="demo"),
                    return_state=True,
                )
                result = cast(dict[str, Any], state.result())
                link = flow_run_link(
                    get_current_settings().api.url, state.state_details.flow_run_id
                )
            handle = SandboxHandle(server.url, server.api_key, server.data_dir)
            stored = handle.jobs()
            uploads = handle.uploads()
            handle.close()
            echo(f"Frames Info: {result['info']}")
            for step, job_info in result["jobs"].items():
                record = next(j for j in stored if j["jid"] == job_info["jid"])
                frames = ", ".join(t["frames"] for t in record["tasks_data"])
                count = len(record["tasks_data"])
                echo(f"{step} job {job_info['jid']}: {count} tasks ({frames}) -> {job_info['url']}")
            echo(f"{len(uploads)} files uploaded to the sandbox; {len(stored)} jobs in all")
            echo(f"Done in {time.monotonic() - started:.1f} s")
            if keep:
                echo(f"Prefect UI, this flow run: {link}")
                wait_for_ctrl_c(echo)
            else:
                echo(f"Prefect flow run: {link}")
                echo(
                    "The sandbox and Prefect's local backend stop now; run `prefect-conductor"
                    " demo --keep` to open the job pages and the Prefect UI."
                )
    return result
