"""``prefect-conductor studio up|down|restart|status``: the whole studio stack on loopback.

``up`` starts, in order: Redis (``redis_server.py``), PostgreSQL (``postgres.py``), Prefect's
database migrations (once, before any API process), the Prefect API in N processes behind one
port (``prefect server start --workers N --no-services``: uvicorn's supervisor forks them and
starts a new one when one dies), Prefect's background services in a process of their own
(``prefect server services start``: scheduler, late runs, the lease repossessor and the rest, once
for the whole studio), the ``studio`` process work pool with two queues, the deployments, and N
``prefect worker start`` processes; then writes ``studio/state.json`` (process ids, ports, the
API URL; never a password). Prefect's messaging, cache, event ordering, background-task queue
and concurrency leases are in Redis, so every API process sees the same state and a lease
outlives the process that granted it. ``down`` stops the workers, the services, the API, Redis,
then PostgreSQL (SIGINT to each one's own process group, SIGKILL after a grace) and removes the
state file: nothing is left running. ``restart`` restarts the API and services only. ``up`` on a
running stack only reports it.

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

import json
import os
import shlex
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
from prefect_conductor.studio import processes
from prefect_conductor.studio.postgres import Cluster
from prefect_conductor.studio.redis_server import RedisServer

POOL = "studio"
QUEUES = {"interactive": 1, "batch": 10}
"""Work queue -> priority (lower is served first; Prefect renumbers them after the pool's
``default`` queue, keeping the order)."""
RUNS_PER_WORKER = 4
"""Flow runs one worker runs at once (``prefect worker start --limit``)."""
WORKER_NICE = 10
"""How much lower the workers' CPU priority is than the server's (``nice``; 0 keeps it equal)."""
API_PROCESSES = 2
"""Prefect API processes behind the one port (``prefect server start --workers``)."""
SAFETY_SECONDS = 3600
"""The watch-jobs deployment's schedule: it only replaces a watcher that died; a render run that
suspends starts one itself (as in deployments/prefect.yaml)."""
LEAN_CLIENT = {"PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false"}
"""The workers' and their runs' Prefect client: the studio's server does not ask for CSRF tokens
(``PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED`` is off), so a client need not fetch one; with
it on, every client a run opens first asks ``GET /csrf-token`` (12 of a run's 54 requests)."""
START_TIMEOUT = 420.0
"""Seconds the API has to answer after it starts (its N processes each import Prefect; on a
busy 2-core machine that alone took over 240 s)."""


class StudioError(ServiceError):
    """The studio stack could not be started or stopped."""


@dataclass(frozen=True)
class StudioState:
    api_url: str
    server_pid: int
    """The API's supervisor (``prefect server start``); the API processes are its children."""
    services_pid: int
    redis_pid: int
    redis_port: int
    worker_pids: list[int]
    postgres_port: int
    api_processes: int


def studio_dir() -> Path:
    return get_settings().home / "studio"


def _state_path() -> Path:
    return studio_dir() / "state.json"


def read_state() -> StudioState | None:
    try:
        return StudioState(**json.loads(_state_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: StudioState) -> None:
    _state_path().write_text(json.dumps(asdict(state)), encoding="utf-8")


def api_process_pids(state: StudioState) -> list[int]:
    """The API processes: the supervisor itself when there is one, else its children (/proc)."""
    if state.api_processes == 1:
        return [state.server_pid]
    return processes.children(state.server_pid)


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _clean_env() -> dict[str, str]:
    """This process's environment without a Prefect API of its own (the stack's is set later)."""
    env = dict(os.environ)
    for name in ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_API_KEY"):
        env.pop(name, None)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


def _wait_healthy(api_url: str, pid: int, log: Path, count: int) -> None:
    """Until the API answers and all ``count`` API processes have started."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise StudioError(f"the studio's Prefect server exited; see {log}")
        try:
            healthy = httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            healthy = False
        if healthy and (count == 1 or len(processes.children(pid)) >= count):
            return
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


RUN_COMMAND = shlex.join([sys.executable, "-m", "prefect.engine"])
"""How a worker starts a flow run of the studio's deployments (``_deploy``)."""


def _deploy(api_url: str) -> None:
    """The deployments, by module path: a worker needs only the installed package. Without the
    watcher a render run suspended while Conductor renders its scouts would never be resumed:
    each suspending run starts one, and a slow schedule replaces one that died.

    Each names its run command (``python -m prefect.engine``, this Python): a process worker given
    a command starts it directly, where without one it first starts Prefect's workspace
    supervisor, a second Python process per run that prepares a working copy these module-path
    deployments do not need (an interpreter start, its imports and its memory per run)."""
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
        " work_queue_name=queue, interval=every, parameters=given,"
        f" job_variables={{'command': {RUN_COMMAND!r}}}).apply()\n"
    )
    env = {**_clean_env(), "PREFECT_API_URL": api_url}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise StudioError(f"deploying the flows failed: {last[0]}")


def _server_env(folder: Path, cluster: Cluster, pg_port: int, redis_port: int) -> dict[str, str]:
    """The API's and the services' environment: PostgreSQL and Redis; the passwords are here and
    nowhere else."""
    return {
        **_clean_env(),
        **RedisServer.for_home(folder).prefect_env(redis_port),
        "PREFECT_API_DATABASE_CONNECTION_URL": cluster.url(pg_port),
        # as the workers expect (LEAN_CLIENT)
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "false",
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",  # done once, before (_prepare_database)
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
    }


PREPARE_DATABASE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def prepare():
    db = provide_database_interface()
    await db.create_db()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)

asyncio.run(prepare())
"""
"""What each API process does at startup when it runs alone: the migrations, then the block
types (the same two calls Prefect's server makes)."""


def _prepare_database(env: dict[str, str], log: Path) -> None:
    """Prefect's migrations and block types, once, before any API process starts: N processes
    starting at once would each try, and all but one fail on the same rows."""
    with log.open("ab") as handle:
        result = subprocess.run(
            [sys.executable, "-c", PREPARE_DATABASE],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StudioError(f"preparing Prefect's database failed; see {log}")


def _start_prefect(
    folder: Path, env: dict[str, str], port: int, api_processes: int
) -> tuple[int, int]:
    """The API's supervisor and the services process; their process ids once the API answers."""
    api_url = f"http://127.0.0.1:{port}/api"
    server_log = folder / "server.log"
    command = [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(api_processes), "--no-services"]
    server_pid = processes.spawn(command, {**env, "PREFECT_SERVER_API_PORT": str(port)}, server_log)
    try:
        _wait_healthy(api_url, server_pid, server_log, api_processes)
        services_pid = processes.spawn(
            [_prefect(), "server", "services", "start"], env, folder / "services.log"
        )
    except BaseException:
        processes.stop_group(server_pid)
        raise
    return server_pid, services_pid


def up(
    workers: int,
    echo: Callable[[str], None],
    *,
    api_processes: int = API_PROCESSES,
    runs_per_worker: int = RUNS_PER_WORKER,
    worker_nice: int = WORKER_NICE,
) -> StudioState:
    """Start the stack (or report the running one); its state.

    Each worker runs at most ``runs_per_worker`` flow runs at once, ``worker_nice`` steps below
    the server's CPU priority (module doc).
    """
    state = read_state()
    if state is not None and pid_alive(state.server_pid):
        echo(
            f"studio already up: {state.api_url} ({state.api_processes} API processes,"
            f" {len(state.worker_pids)} workers)"
        )
        return state
    folder = studio_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _stop_leftovers(state)
    cluster = Cluster.for_home(folder)
    redis = RedisServer.for_home(folder)
    redis_port = free_port()
    redis_pid = redis.start(redis_port).pid
    started: list[int] = [redis_pid]
    try:
        echo(f"Redis on 127.0.0.1:{redis_port}")
        if cluster.orphaned():
            echo(f"PostgreSQL: {cluster.password_file} is gone; starting a new, empty cluster")
            cluster.discard()
        if not cluster.initialised():
            echo("PostgreSQL: initdb")
            cluster.init()
        pg_port = free_port()
        cluster.start(pg_port)
        cluster.create_database(pg_port)
        echo(f"PostgreSQL on 127.0.0.1:{pg_port}")
        env = _server_env(folder, cluster, pg_port, redis_port)
        _prepare_database(env, folder / "server.log")
        port = free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        server_pid, services_pid = _start_prefect(folder, env, port, api_processes)
        started[:0] = [services_pid, server_pid]
        echo(
            f"Prefect API in {api_processes} processes on PostgreSQL and Redis:"
            f" {api_url.removesuffix('/api')}; background services in a process of their own"
        )
        _pool_and_queues(api_url)
        _deploy(api_url)
        worker_env = {
            **_clean_env(),
            **LEAN_CLIENT,
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(folder / "worker-home"),
        }
        pids = []
        for n in range(workers):
            command = [_prefect(), "worker", "start", "--pool", POOL, "--name", f"studio-{n}"]
            command += ["--limit", str(runs_per_worker)]
            pid = processes.spawn(command, worker_env, folder / f"worker-{n}.log", nice=worker_nice)
            pids.append(pid)
            started.insert(0, pid)
    except BaseException:
        for pid in started:
            processes.stop_group(pid)
        cluster.stop()
        raise
    state = StudioState(
        api_url, server_pid, services_pid, redis_pid, redis_port, pids, pg_port, api_processes
    )
    _write_state(state)
    echo(
        f"{workers} workers on pool {POOL!r}, {runs_per_worker} runs each at most"
        " (queues: interactive first, then batch)"
    )
    echo(f"PREFECT_API_URL={api_url}")
    return state


def restart(echo: Callable[[str], None]) -> StudioState:
    """Restart Prefect's API processes and services; Redis, PostgreSQL and the workers keep
    running, and leases held across the restart stay valid (they are in Redis)."""
    state = read_state()
    if state is None or not pid_alive(state.redis_pid):
        raise StudioError("the studio is not running; start it with: prefect-conductor studio up")
    processes.stop_group(state.services_pid)
    processes.stop_group(state.server_pid)
    folder = studio_dir()
    env = _server_env(folder, Cluster.for_home(folder), state.postgres_port, state.redis_port)
    port = int(state.api_url.rsplit(":", 1)[1].split("/", 1)[0])
    server_pid, services_pid = _start_prefect(folder, env, port, state.api_processes)
    state = StudioState(**{**asdict(state), "server_pid": server_pid, "services_pid": services_pid})
    _write_state(state)
    echo(f"Prefect restarted: {state.api_processes} API processes and the services")
    return state


def _stop_leftovers(state: StudioState | None) -> None:
    """What a stack whose API died left running (Redis, workers, PostgreSQL)."""
    if state is not None:
        for pid in [*state.worker_pids, state.services_pid, state.server_pid, state.redis_pid]:
            processes.stop_group(pid)
    cluster = Cluster.for_home(studio_dir())
    if cluster.running():
        cluster.stop()


def down(echo: Callable[[str], None]) -> None:
    """Stop workers, services, API, Redis and PostgreSQL; remove the state file."""
    _stop_leftovers(read_state())
    _state_path().unlink(missing_ok=True)
    echo("studio down: nothing left running")


def _postgres_pid(cluster: Cluster) -> int:
    """The postmaster's process id, from its pid file (0 when it does not run)."""
    try:
        return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def status() -> str:
    """Every process of the stack with its role, one a line."""
    state = read_state()
    if state is None or not pid_alive(state.server_pid):
        return "studio: not running"

    def line(role: str, pid: int, where: str = "") -> str:
        alive = "running" if pid_alive(pid) else "not running"
        return f"  {role:<16} pid {pid:<8} {alive}{'  ' + where if where else ''}"

    port = state.api_url.rsplit(":", 1)[1].split("/", 1)[0]
    api = api_process_pids(state)
    workers = sum(1 for pid in state.worker_pids if pid_alive(pid))
    lines = [
        f"studio: {state.api_url} ({len(api)} of {state.api_processes} API processes,"
        f" {workers} of {len(state.worker_pids)} workers alive)",
        line("redis", state.redis_pid, f"127.0.0.1:{state.redis_port}"),
        line(
            "postgresql",
            _postgres_pid(Cluster.for_home(studio_dir())),
            f"127.0.0.1:{state.postgres_port}",
        ),
        *([line("api supervisor", state.server_pid)] if state.api_processes > 1 else []),
        *(line("api", pid, f"127.0.0.1:{port}") for pid in api),
        line("services", state.services_pid),
        *(line(f"worker studio-{n}", pid) for n, pid in enumerate(state.worker_pids)),
    ]
    return "\n".join(lines)
