"""Prefect's overhead on the render-submit chain, as a measured ratio.

Runs the whole flow against a sandbox that answers at once (tasks finish in 10 ms) and prints,
per submission (median of a few warm runs):

* the flow's wall time, as the caller sees it;
* the sum of its steps' own work: each task run's time in Running, as Prefect recorded it;
* the same steps as plain function calls with no Prefect at all;
* what one run asks of the Prefect server: its REST requests (by route) and the events it
  emits (by name), counted in the run's own process.

The ratios say what Prefect costs around the work: engine, state round trips, artifacts, logs
and the sync flow's heartbeat-thread join (up to 1 s: the thread sleeps in 1-second steps). The
first flow run, which starts Prefect's temporary server, is reported apart. The requests and
events are what the server pays for per run (each event a task-run or state record, each request
a round trip and a database write or read).

The runs use the studio workers' client settings (``studio.stack.LEAN_CLIENT``);
``--prefect-defaults`` runs them with Prefect's defaults instead, for comparison.

Run: python bench/flow_overhead.py [--prefect-defaults]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prefect_conductor.sandbox.server import SandboxServer
from prefect_conductor.studio.stack import LEAN_CLIENT

if TYPE_CHECKING:
    from prefect.states import State

REPO = Path(__file__).resolve().parent.parent
SHOT = REPO / "examples" / "shot010"
RUNS = 5
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Calls:
    """Counts the REST requests (``METHOD /route``, ids as ``{id}``) Prefect's clients send and
    the events its events worker emits, in this process."""

    def __init__(self) -> None:
        self.requests: collections.Counter[str] = collections.Counter()
        self.events: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def install(self) -> None:
        from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient
        from prefect.events.worker import EventsWorker

        calls = self
        async_send = PrefectHttpxAsyncClient.send
        sync_send = PrefectHttpxSyncClient.send
        handle = EventsWorker._handle

        async def counted_async(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            calls.request(request)
            return await async_send(client, request, *args, **kwargs)

        def counted_sync(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            calls.request(request)
            return sync_send(client, request, *args, **kwargs)

        async def counted_event(worker: Any, event: Any) -> None:
            with calls._lock:
                calls.events[event.event] += 1
            await handle(worker, event)

        PrefectHttpxAsyncClient.send = counted_async  # type: ignore[method-assign]
        PrefectHttpxSyncClient.send = counted_sync  # type: ignore[method-assign]
        EventsWorker._handle = counted_event  # type: ignore[method-assign]

    def request(self, request: Any) -> None:
        route = UUID.sub("{id}", request.url.path.split("/api", 1)[-1])
        with self._lock:
            self.requests[f"{request.method} {route}"] += 1

    def take(self) -> tuple[collections.Counter[str], collections.Counter[str]]:
        """The counts since the last call; the counters start again from zero."""
        with self._lock:
            taken = (self.requests, self.events)
            self.requests, self.events = collections.Counter(), collections.Counter()
        return taken


CALLS = Calls()
TOTALS: tuple[collections.Counter[str], collections.Counter[str]] = (
    collections.Counter(),
    collections.Counter(),
)
"""The warm runs' requests and events (the bench's own reads after each run not counted)."""


def steps_without_prefect(key: str) -> float:
    """export -> catalogue -> validate/plan -> upload -> scout submit -> wait -> full submit."""
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.api.refresh import refresh_catalog
    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
    from prefect_conductor.conductor_cloud.submission.prepare import (
        payloads,
        prepare,
        upload_entries,
    )
    from prefect_conductor.conductor_cloud.transfers import staging
    from prefect_conductor.conductor_cloud.transfers.uploads import upload_files

    started = time.perf_counter()
    job = load_job(SHOT / "job.yaml")
    scene = staging.export_scene(SceneSource(export_path=str(SHOT / "scene_export.json")))
    with ConductorClient() as client:
        catalog, _ = refresh_catalog(client)
        prepared = prepare(job, scene, catalog)
        result = upload_files(client, list(prepared.files), project=job.project)
        md5s = {Path(f.path): f.md5 for f in result.files}
        bodies = payloads(prepared, upload_entries(md5s))
        scout = client.submit_job(bodies["scout"], f"{key}:scout")
        while not all(t["status"] == "success" for t in client.get_tasks(scout.jid)):
            time.sleep(0.05)
        client.submit_job(bodies["full"], f"{key}:full")
    return time.perf_counter() - started


def flow_run(key: str) -> tuple[float, float, int]:
    """Wall time of one flow run, the sum of its task runs' own time, and how many ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
    from prefect.events.worker import EventsWorker

    from prefect_conductor.conductor_cloud.job.loaders import load_job
    from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
    from prefect_conductor.flows.render_submit import render_submit

    started = time.perf_counter()
    state = cast(
        "State[Any]",
        render_submit(
            job=load_job(SHOT / "job.yaml"),
            scene=SceneSource(export_path=str(SHOT / "scene_export.json")),
            options=RunOptions(poll_seconds=0.05, submission_key=key),
            return_state=True,
        ),
    )
    wall = time.perf_counter() - started
    EventsWorker.drain_all()
    requests, events = CALLS.take()
    TOTALS[0].update(requests)
    TOTALS[1].update(events)
    assert state.is_completed(), state
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run_id]))
        )
    work = sum(run.total_run_time.total_seconds() for run in task_runs)
    return wall, work, len(task_runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefect-defaults", action="store_true", help="no studio settings")
    args = parser.parse_args()
    if not args.prefect_defaults:
        os.environ.update(LEAN_CLIENT)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work_dir / "home")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # a busy machine starts Prefect's temporary server in more than its default 20 s
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    CALLS.install()
    with SandboxServer(work_dir / "sandbox", task_seconds=0.01) as server:
        os.environ["CONDUCTOR_URL"] = server.url
        os.environ["CONDUCTOR_API_KEY"] = server.api_key
        plain = [steps_without_prefect(f"plain-{n}") for n in range(RUNS)]
        first_wall, _, _ = flow_run("flow-cold")
        TOTALS[0].clear()
        TOTALS[1].clear()
        warm = [flow_run(f"flow-{n}") for n in range(RUNS)]
        requests, events = TOTALS
    plain_median = statistics.median(plain)
    wall_median = statistics.median(wall for wall, _, _ in warm)
    work_median = statistics.median(work for _, work, _ in warm)
    tasks = warm[0][2]
    rows = [
        ("flow, first run (starts Prefect's temporary server)", first_wall),
        (f"flow wall time, warm (median of {RUNS})", wall_median),
        (f"sum of its {tasks} task runs' own time (Running)", work_median),
        ("the same steps as plain calls, no Prefect", plain_median),
    ]
    for label, seconds in rows:
        print(f"{label:<55} {seconds:7.3f} s")
    print(
        f"ratio wall / steps' own time = {wall_median / work_median:.1f}x"
        f" ({wall_median - work_median:.3f} s around the steps);"
        f" ratio wall / plain calls = {wall_median / plain_median:.1f}x"
    )
    print("client settings:", "Prefect's defaults" if args.prefect_defaults else LEAN_CLIENT)
    print(
        f"per run: {requests.total() / RUNS:.1f} REST requests to Prefect,"
        f" {events.total() / RUNS:.1f} events"
    )
    for name, count in [*requests.most_common(), *events.most_common()]:
        print(f"  {count / RUNS:5.1f}  {name}")


if __name__ == "__main__":
    main()
