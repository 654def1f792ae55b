"""The admin API under ``/_sandbox/``: what tests and benches use to steer and inspect a sandbox.

No token is needed; the sandbox only listens on loopback and the gate refuses any other peer.

* ``POST /_sandbox/faults`` ``[rule, ...]`` appends fault rules (``faults.py``);
  ``GET`` lists them with their hit counts; ``DELETE`` removes them all.
* ``POST /_sandbox/config`` ``{"task_seconds", "multipart_threshold", "part_size",
  "fail_frames", "fail_attempts", "preempt_frames", "preempt_attempts", "output_bytes",
  "instances", "frame_seconds"}`` (any subset; 400 names a bad value). ``task_seconds``: how long
  a task stays pending before a node may take it. ``instances`` is how many stand-in render nodes
  run tasks at once and ``frame_seconds`` how long the stand-in renderer takes per frame (a task
  rendering one of N tiles takes ``frame_seconds / N`` per frame) (``node/runner.py``);
  ``output_bytes`` > 0 makes the stand-in renderer write files that large instead of images.
  ``fail_frames``: a task holding one of these frames when its job is submitted fails when the
  renderer reaches it, on the frame's first ``fail_attempts`` renders only (0, the default: on
  every render). ``preempt_frames`` / ``preempt_attempts``: the same, but the task's node is
  taken away at that frame (the task is ``preempted``; the job's ``autoretry_policy``
  ``{"preempted": {"max_retries": N}}`` puts it back to pending up to N times). An attempt is one
  start of a task holding the frame on a stand-in node (a task rendering one tile: an attempt at
  that tile), counted across all jobs and kept over a restart.
* ``GET /_sandbox/state`` -> ``{"jobs": [stored payload + job view + submitted_at], "tasks":
  [{"jid", "tid", "frames", "status", "run_started", "run_ended", "preemptions"}], "attempts":
  [{"frame", "tile", "count"}], "uploads": {base64 md5: size}, "requests": [{"method", "path",
  "status", "params", "terms"}], "bearer_on_storage": n}``; a task's ``run_started`` and
  ``run_ended`` are when its last run on a node began and ended (epoch seconds, null: not yet);
  ``status`` of a request is 0 for a dropped connection; ``params`` are the query's
  parameter names and ``terms`` the filter terms' kinds (``jid_gt_``): no query value is ever
  logged, so no secret is. ``in_flight`` gives, for ``job_posts`` and ``uploads``, how many are
  being served ``now`` and the ``max`` at once since the last reset (``inflight.py``).
* ``POST /_sandbox/reset`` forgets jobs, uploads, requests, faults, attempt counts and settings
  (back to what the server was started with); keeps the API key and issued tokens, and restarts
  job ids at 00001.
* ``POST /_sandbox/release/<jid>`` releases a native-scout job's held tasks. It stands for the
  user pressing "continue" in Conductor's dashboard: no client releases them through the API.

These routes are the fake's own, not Conductor's (``evidence.py`` lists Conductor's).
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.faults import FaultRule
from prefect_conductor.sandbox.routes.bodies import load_json
from prefect_conductor.sandbox.routes.jobs import Jobs
from prefect_conductor.sandbox.routes.tokens import error


class Admin:
    """The ``/_sandbox/`` endpoints of one sandbox."""

    def __init__(self, context: SandboxContext, jobs: Jobs) -> None:
        self.context = context
        self.jobs = jobs

    async def faults(self, request: Request) -> Response:
        book = self.context.faults
        if request.method == "DELETE":
            book.clear()
        elif request.method == "POST":
            try:
                items = load_json(await request.body())
                if not isinstance(items, list):
                    raise ValueError("expected a JSON list of fault rules")
                rules = [FaultRule.from_dict(item) for item in items]
            except (ValueError, TypeError, OverflowError) as problem:
                return error(400, f"faults: {problem}")
            book.add(rules)
        return JSONResponse({"faults": book.describe()})

    async def config(self, request: Request) -> Response:
        try:
            self.context.store.set_settings(load_json(await request.body()))
        except (ValueError, OverflowError) as problem:
            return error(400, f"config: {problem}")
        return JSONResponse({"ok": True})

    async def state(self, request: Request) -> Response:
        store = self.context.store
        jobs = []
        killed: dict[int, float] = {}
        for row in store.query("SELECT * FROM jobs ORDER BY jid"):
            payload = json.loads(row["payload"])
            payload.update(self.jobs.job_view(row, payload))
            payload["submitted_at"] = row["submitted_at"]
            jobs.append(payload)
            killed[int(row["jid"])] = float(row["killed"])
        tasks = [
            {
                "jid": f"{task['jid']:05d}",
                "tid": f"{task['tid']:03d}",
                "frames": task["frames"],
                "status": str(self.jobs.task_status(task, killed.get(int(task["jid"]), 0.0))),
                "run_started": task["run_started"],
                "run_ended": task["run_ended"],
                "preemptions": task["preemptions"],
            }
            for task in store.query("SELECT * FROM tasks ORDER BY jid, tid")
        ]
        attempts = [
            {"frame": row["frame"], "tile": row["tile"], "count": row["count"]}
            for row in store.query("SELECT * FROM attempts ORDER BY frame, tile")
        ]
        return JSONResponse(
            {
                "jobs": jobs,
                "tasks": tasks,
                "attempts": attempts,
                "uploads": store.uploads(),
                "requests": store.requests(),
                "bearer_on_storage": store.bearer_on_storage(),
                "in_flight": self.context.in_flight.snapshot(),
            }
        )

    async def reset(self, request: Request) -> Response:
        self.context.reset()
        return JSONResponse({"ok": True})

    async def release(self, request: Request) -> Response:
        jid = request.path_params["jid"]
        if not (jid.isdigit() and len(jid) < 10 and self.jobs.release(int(jid))):
            return error(404, f"no job {jid[:40]}")
        return JSONResponse({"ok": True})
