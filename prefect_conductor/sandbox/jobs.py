"""Jobs and tasks: submission, the task clock, listing, kill and release, task logs.

``POST jobs/`` checks what Conductor would refuse (missing keys, an unknown or inactive project,
task frames it cannot read, a file not uploaded when ``local_upload`` is true) and stores the
payload and its tasks. Status endpoints and shapes are the ones ``status.py`` assumes.

The task clock is computed on read from timestamps, so no thread is needed and a restart keeps
time: a task is ``pending`` for ``task_seconds`` after its clock starts, then ``running`` for
``task_seconds``, then ``success``, or ``failed`` when it holds a frame that was in
``fail_frames`` when the job was submitted. The current ``task_seconds`` applies to every task.

Native scout: when a job has ``scout_frames``, tasks holding none of them start ``holding`` and
their clock starts when released, by ``POST /_sandbox/release/<jid>`` (the dashboard's button)
or ``PUT jobs_multi {"action": "release", "jobids": [...]}``. A kill (``jobs_multi`` action
``kill``) makes every task of the job ``killed``, finished or not (the simplest rule a client
can rely on; the kill time is stored).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_conductor.conductor_cloud.errors import FrameSpecError
from prefect_conductor.conductor_cloud.frames import parse_frame_spec
from prefect_conductor.conductor_cloud.status import TaskStatus, job_status_from_tasks
from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.tokens import error

REQUIRED_JOB_KEYS = ("instance_type", "project", "tasks_data", "output_path")

JobFilter = Callable[[int, dict[str, Any]], bool]


def _frames(spec: str) -> set[int]:
    return set(parse_frame_spec(spec)) if spec.strip() else set()


def _jid_above(low: int) -> JobFilter:
    return lambda jid, _payload: jid > low


def _jid_below(high: int) -> JobFilter:
    return lambda jid, _payload: jid < high


def _metadata_equals(key: str, value: str) -> JobFilter:
    def keep(_jid: int, payload: dict[str, Any]) -> bool:
        metadata = payload.get("metadata") or {}
        return key in metadata and str(metadata[key]) == value

    return keep


def parse_filter(text: str) -> list[JobFilter]:
    """The listing filters status.py assumes: ``jid_gt_N``, ``jid_lt_N``, ``metadata.K=eq:V``.

    Parts are comma-separated; a part the sandbox does not know is ignored, as a lenient server
    would (our client re-checks what it asked for).
    """
    predicates: list[JobFilter] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part.startswith("jid_gt_") and part[7:].isdigit():
            predicates.append(_jid_above(int(part[7:])))
        elif part.startswith("jid_lt_") and part[7:].isdigit():
            predicates.append(_jid_below(int(part[7:])))
        elif part.startswith("metadata.") and "=eq:" in part:
            key, _, value = part[len("metadata.") :].partition("=eq:")
            predicates.append(_metadata_equals(key, value))
    return predicates


class Jobs:
    """The job endpoints of one sandbox."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.store = context.store

    # submission ---------------------------------------------------------------------------

    def _refusal(self, payload: Any) -> str | None:
        """Why Conductor would refuse this payload, or None."""
        if not isinstance(payload, dict):
            return "the body must be a JSON object"
        missing = [key for key in REQUIRED_JOB_KEYS if key not in payload]
        if missing:
            return f"missing required keys: {', '.join(missing)}"
        projects = {p["name"]: p.get("status") for p in self.context.catalog["projects"]}
        if projects.get(payload["project"]) != "active":
            return f"project: unknown or inactive project {payload['project']!r}"
        tasks = payload["tasks_data"]
        if not isinstance(tasks, list):
            return "tasks_data must be a list of {command, frames}"
        for index, task in enumerate(tasks):
            if not (isinstance(task, dict) and isinstance(task.get("command"), str)):
                return f"tasks_data[{index}] must be {{command, frames}}"
            try:
                parse_frame_spec(str(task.get("frames", "")), field=f"tasks_data[{index}].frames")
            except FrameSpecError as problem:
                return str(problem)
        scout = str(payload.get("scout_frames") or "")
        try:
            if scout.strip():
                parse_frame_spec(scout, field="scout_frames")
        except FrameSpecError as problem:
            return str(problem)
        if payload.get("local_upload", True):
            for entry in payload.get("upload_files") or []:
                if not isinstance(entry, dict) or not self.store.has_upload(str(entry.get("md5"))):
                    name = entry.get("destination") if isinstance(entry, dict) else entry
                    return f"upload_files: {name} was never uploaded"
        return None

    async def submit(self, request: Request) -> Response:
        """``POST jobs/``: store the job and its tasks; 201 with the new 5-digit job id."""
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return error(400, "the body is not JSON")
        refusal = self._refusal(payload)
        if refusal is not None:
            return error(400, refusal)
        scout = _frames(str(payload.get("scout_frames") or ""))
        failing = set(self.store.setting("fail_frames"))
        now = time.time()
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (payload, submitted_at) VALUES (?, ?)", (json.dumps(payload), now)
            )
            jid = int(cursor.lastrowid or 0)
            for tid, task in enumerate(payload["tasks_data"]):
                frames = _frames(str(task["frames"]))
                held = bool(scout) and not (frames & scout)
                db.execute(
                    "INSERT INTO tasks (jid, tid, frames, command, started_at, will_fail)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        jid,
                        tid,
                        str(task["frames"]),
                        task["command"],
                        None if held else now,
                        int(bool(frames & failing)),
                    ),
                )
        text = f"{jid:05d}"
        return JSONResponse(
            {"body": "job submitted.", "jobid": text, "status": "success", "uri": f"/jobs/{text}"},
            status_code=201,
        )

    # the clock ----------------------------------------------------------------------------

    def task_status(self, task: Any, killed_at: float) -> TaskStatus:
        """A task's state now, from its clock; every task of a killed job is ``killed``."""
        if killed_at:
            return TaskStatus.KILLED
        if task["started_at"] is None:
            return TaskStatus.HOLDING
        elapsed = time.time() - float(task["started_at"])
        seconds = float(self.store.setting("task_seconds"))
        if elapsed < seconds:
            return TaskStatus.PENDING
        if elapsed < 2 * seconds:
            return TaskStatus.RUNNING
        return TaskStatus.FAILED if task["will_fail"] else TaskStatus.SUCCESS

    def _tasks(self, jid: int) -> list[Any]:
        return self.store.query("SELECT * FROM tasks WHERE jid = ? ORDER BY tid", jid)

    def job_view(self, row: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A job as ``GET api/v1/jobs`` shows it (status.py)."""
        payload = payload if payload is not None else json.loads(row["payload"])
        tasks = self._tasks(row["jid"])
        statuses = [self.task_status(t, float(row["killed"])) for t in tasks]
        return {
            "jid": f"{row['jid']:05d}",
            "job_title": payload.get("job_title", ""),
            "project": payload.get("project"),
            "status": str(job_status_from_tasks(statuses)),
            "metadata": payload.get("metadata") or {},
            "created_at": row["submitted_at"],
            "task_count": len(tasks),
            "scout_frames": payload.get("scout_frames", ""),
        }

    def _job_row(self, jid: str) -> Any:
        if not jid.isdigit():
            return None
        rows = self.store.query("SELECT * FROM jobs WHERE jid = ?", int(jid))
        return rows[0] if rows else None

    # reading ------------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        """``GET api/v1/jobs[?filter=...]``."""
        predicates = parse_filter(request.query_params.get("filter", ""))
        views = []
        for row in self.store.query("SELECT * FROM jobs ORDER BY jid"):
            payload = json.loads(row["payload"])
            if all(keep(int(row["jid"]), payload) for keep in predicates):
                views.append(self.job_view(row, payload))
        return JSONResponse({"data": views})

    async def get(self, request: Request) -> Response:
        """``GET api/v1/jobs/<jid>``."""
        row = self._job_row(request.path_params["jid"])
        if row is None:
            return error(404, "no such job")
        return JSONResponse({"data": self.job_view(row)})

    async def tasks(self, request: Request) -> Response:
        """``GET api/v1/jobs/<jid>/tasks``."""
        row = self._job_row(request.path_params["jid"])
        if row is None:
            return error(404, "no such job")
        return JSONResponse(
            {
                "data": [
                    {
                        "tid": f"{t['tid']:03d}",
                        "frames": t["frames"],
                        "command": t["command"],
                        "status": str(self.task_status(t, float(row["killed"]))),
                    }
                    for t in self._tasks(row["jid"])
                ]
            }
        )

    async def task_list(self, request: Request) -> Response:
        """``GET api/v1/tasks?filter=jobLabel_eq_<jid>`` (the Tractor bridge's form)."""
        text = request.query_params.get("filter", "")
        label = text[len("jobLabel_eq_") :] if text.startswith("jobLabel_eq_") else ""
        row = self._job_row(label)
        if row is None:
            return JSONResponse({"data": []})
        return JSONResponse(
            {
                "data": [
                    {
                        "jobLabel": f"{row['jid']:05d}",
                        "taskLabel": f"{t['tid']:03d}",
                        "frames": t["frames"],
                        "command": t["command"],
                        "status": str(self.task_status(t, float(row["killed"]))),
                    }
                    for t in self._tasks(row["jid"])
                ]
            }
        )

    async def task_log(self, request: Request) -> Response:
        """``GET get_log_file?job=&task=``: no log lines, but the task's status."""
        row = self._job_row(request.query_params.get("job", ""))
        tid = request.query_params.get("task", "")
        rows = (
            self.store.query("SELECT * FROM tasks WHERE jid = ? AND tid = ?", row["jid"], int(tid))
            if row is not None and tid.isdigit()
            else []
        )
        if not rows:
            return error(404, "no such task")
        status = self.task_status(rows[0], float(row["killed"]))
        return JSONResponse(
            {"logs": [], "new_num_lines": [0], "status_description": "", "task_status": str(status)}
        )

    # acting -------------------------------------------------------------------------------

    async def jobs_multi(self, request: Request) -> Response:
        """``PUT jobs_multi {"action": "kill"|"release", "jobids": [...]}``."""
        try:
            body = json.loads(await request.body())
            action, jids = body["action"], [int(j) for j in body["jobids"]]
        except (ValueError, KeyError, TypeError):
            return error(400, "expected {action, jobids}")
        if action not in ("kill", "release"):
            return error(400, f"unknown action {action!r}; use kill or release")
        for jid in jids:
            if action == "kill":
                self.kill(jid)
            else:
                self.release(jid)
        text = [f"{jid:05d}" for jid in jids]
        return JSONResponse({"body": "success", "message": f"Jobs {text} have been {action}."})

    def kill(self, jid: int) -> None:
        self.store.execute(
            "UPDATE jobs SET killed = ? WHERE jid = ? AND killed = 0", time.time(), jid
        )

    def release(self, jid: int) -> bool:
        """Start the clock of a job's held tasks; False if there is no such job."""
        if not self.store.query("SELECT 1 FROM jobs WHERE jid = ?", jid):
            return False
        self.store.execute(
            "UPDATE tasks SET started_at = ? WHERE jid = ? AND started_at IS NULL", time.time(), jid
        )
        return True
