"""``prefect-conductor studio up|down|status``: the whole studio stack on loopback, from packages.

``up`` starts, in order: PostgreSQL (``postgres.py``), ``prefect server start`` on it (its own
PREFECT_HOME under ``<per-user folder>/studio``), the ``studio`` process work pool with two
queues, the deployments, and N ``prefect worker start`` processes; then writes
``studio/state.json`` (process ids, ports, the API URL; never the database password). ``down``
stops the workers, then the server (SIGINT to each one's own process group, SIGKILL after a
grace), then PostgreSQL, and removes the state file: nothing is left running. ``up`` on a running
stack only reports it.

On one machine the server and the workers share the CPUs, and every flow run is a Python process
of its own: unbounded, a Submit storm starts dozens of them and the API answers the next Submit in
seconds. So each worker takes at most ``runs_per_worker`` runs at once (``--limit``), and the
workers (and the runs they start, which inherit it) run at a lower CPU priority (``nice``) than the
server and PostgreSQL: an artist's Submit is a few milliseconds of API work that must not queue
behind a flow run's imports. On real machines the workers are elsewhere and only ``--limit``
matters (deployments/README.md).

Fairness between artists (deployments/README.md): the pool's ``interactive`` queue (priority 1)
takes the artists' Submits (the ``render-submit/submit-to-conductor`` deployment's queue); the
``batch`` queue (lower priority) takes batch submissions, so a worker always picks a waiting
Submit before the next shot of a 40-shot batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.processes import free_port, pid_alive
from prefect_conductor.studio.postgres import Cluster

POOL = "studio"
QUEUES = {"interactive": 1, "batch": 10}
"""Work queue -> priority (lower is served first; Prefect renumbers them after the pool's
``default`` queue, keeping the order)."""
RUNS_PER_WORKER = 4
"""Flow runs one worker runs at once (``prefect worker start --limit``)."""
WORKER_NICE = 10
"""How much lower the workers' CPU priority is than the server's (``nice``; 0 keeps it equal)."""
SAFETY_SECONDS = 3600
"""The watch-jobs deployment's schedule: it only replaces a watcher that died; a render run that
suspends starts one itself (as in deployments/prefect.yaml)."""
START_TIMEOUT = 240.0
STOP_TIMEOUT = 20.0


class StudioError(ServiceError):
    """The studio stack could not be started or stopped."""


@dataclass(frozen=True)
class StudioState:
    api_url: str
    server_pid: int
    worker_pids: list[int]
    postgres_port: int


def studio_dir() -> Path:
    return get_settings().home / "studio"


def _state_path() -> Path:
    return studio_dir() / "state.json"


def read_state() -> StudioState | None:
    try:
        return StudioState(**json.loads(_state_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _clean_env() -> dict[str, str]:
    """This process's environment without a Prefect API of its own (the stack's is set later)."""
    env = dict(os.environ)
    for name in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_API_KEY"):
        env.pop(name, None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _spawn(command: list[str], env: dict[str, str], log: Path, nice: int = 0) -> int:
    """Start ``command`` in a session of its own (so ``down`` stops its whole group), ``nice``
    steps below this process's CPU priority."""
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if nice:  # a worker needs seconds to start, so its runs (which inherit this) all have it;
        # set from outside, not in preexec_fn, which is unsafe when the caller has threads
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, process.pid, min(19, ours + nice))
    return process.pid


def _wait_healthy(api_url: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise StudioError(f"the studio's Prefect server exited; see {log}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise StudioError(
        f"the studio's Prefect server did not answer in {START_TIMEOUT:g} s; see {log}"
    )


def _pool_and_queues(api_url: str) -> None:
    with httpx.Client(base_url=api_url + "/", timeout=30.0) as http:
        created = http.post("work_pools/", json={"name": POOL, "type": "process"})
        if created.status_code not in (201, 409):
            raise StudioError(f"work pool {POOL}: {created.status_code} {created.text[:200]}")
        for name, priority in QUEUES.items():
            body = {"name": name, "priority": priority}
            made = http.post(f"work_pools/{POOL}/queues/", json=body)
            if made.status_code == 409:
                made = http.patch(f"work_pools/{POOL}/queues/{name}", json={"priority": priority})
            if made.status_code >= 400:
                raise StudioError(f"work queue {name}: {made.status_code} {made.text[:200]}")


def _deploy(api_url: str) -> None:
    """The deployments, by module path: a worker needs only the installed package. Without the
    watcher a render run suspended while Conductor renders its scouts would never be resumed:
    each suspending run starts one, and a slow schedule replaces one that died."""
    code = (
        "from prefect.deployments.runner import EntrypointType as E\n"
        "from prefect_conductor.flows.render_submit import render_submit\n"
        "from prefect_conductor.flows.refresh_catalog import refresh_catalog\n"
        "from prefect_conductor.flows.submit_batch import submit_batch\n"
        "from prefect_conductor.flows.watch_jobs import watch_jobs\n"
        "for flow, name, queue, every, given in ("
        "(render_submit, 'submit-to-conductor', 'interactive', None, None),"
        " (refresh_catalog, 'refresh', 'interactive', None, None),"
        " (submit_batch, 'batch', 'batch', None, None),"
        f" (watch_jobs, 'resume-waiting-runs', 'interactive', {SAFETY_SECONDS},"
        f" {{'every_seconds': {get_settings().watch_seconds}}})):\n"
        f"    flow.to_deployment(name, entrypoint_type=E.MODULE_PATH, work_pool_name={POOL!r},"
        " work_queue_name=queue, interval=every, parameters=given).apply()\n"
    )
    env = {**_clean_env(), "PREFECT_API_URL": api_url}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise StudioError(f"deploying the flows failed: {last[0]}")


def up(
    workers: int,
    echo: Callable[[str], None],
    *,
    sqlite: bool = False,
    runs_per_worker: int = RUNS_PER_WORKER,
    worker_nice: int = WORKER_NICE,
) -> StudioState:
    """Start the stack (or report the running one); its state.

    Each worker runs at most ``runs_per_worker`` flow runs at once, ``worker_nice`` steps below
    the server's CPU priority (module doc).

    ``sqlite`` keeps Prefect's default SQLite database instead of PostgreSQL: only for
    ``bench/studio.py``'s comparison, which shows why the studio stack does not.
    """
    state = read_state()
    if state is not None and pid_alive(state.server_pid):
        echo(f"studio already up: {state.api_url} ({len(state.worker_pids)} workers)")
        return state
    folder = studio_dir()
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster.for_home(folder)
    pg_port = 0 if sqlite else free_port()
    if cluster.running():
        cluster.stop()
    database: dict[str, str] = {}
    if not sqlite:
        if cluster.orphaned():
            echo(f"PostgreSQL: {cluster.password_file} is gone; starting a new, empty cluster")
            cluster.discard()
        if not cluster.initialised():
            echo("PostgreSQL: initdb")
            cluster.init()
        cluster.start(pg_port)
        cluster.create_database(pg_port)
        echo(f"PostgreSQL on 127.0.0.1:{pg_port}")
        database["PREFECT_API_DATABASE_CONNECTION_URL"] = cluster.url(pg_port)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server_env = {
        **_clean_env(),
        **database,
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    server_log = folder / "server.log"
    server_pid = _spawn(
        [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        server_env,
        server_log,
    )
    try:
        _wait_healthy(api_url, server_pid, server_log)
        where = "SQLite" if sqlite else "PostgreSQL"
        echo(f"Prefect server on {where}: {api_url.removesuffix('/api')}")
        _pool_and_queues(api_url)
        _deploy(api_url)
        worker_env = {
            **_clean_env(),
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(folder / "worker-home"),
        }
        pids = [
            _spawn(
                [
                    *(_prefect(), "worker", "start", "--pool", POOL, "--name", f"studio-{n}"),
                    *("--limit", str(runs_per_worker)),
                ],
                worker_env,
                folder / f"worker-{n}.log",
                nice=worker_nice,
            )
            for n in range(workers)
        ]
    except BaseException:
        _stop_group(server_pid)
        cluster.stop()
        raise
    state = StudioState(api_url, server_pid, pids, pg_port)
    _state_path().write_text(json.dumps(asdict(state)), encoding="utf-8")
    echo(
        f"{workers} workers on pool {POOL!r}, {runs_per_worker} runs each at most"
        " (queues: interactive first, then batch)"
    )
    echo(f"PREFECT_API_URL={api_url}")
    return state


def _stop_group(pid: int) -> None:
    """SIGINT to the process group ``pid`` leads, then SIGKILL after a grace."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def down(echo: Callable[[str], None]) -> None:
    """Stop workers, server and PostgreSQL; remove the state file."""
    state = read_state()
    if state is not None:
        for pid in state.worker_pids:
            _stop_group(pid)
        _stop_group(state.server_pid)
    Cluster.for_home(studio_dir()).stop()
    _state_path().unlink(missing_ok=True)
    echo("studio down: nothing left running")


def status() -> str:
    state = read_state()
    if state is None or not pid_alive(state.server_pid):
        return "studio: not running"
    alive = sum(1 for pid in state.worker_pids if pid_alive(pid))
    return f"studio: {state.api_url} ({alive} of {len(state.worker_pids)} workers alive)"
