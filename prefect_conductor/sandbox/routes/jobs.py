"""Jobs and tasks: submission, the task clock, the listings, kills and the task log.

Only the forms Conductor's clients use (``evidence.py``): ``POST jobs/`` with ciocore's payload
keys (``bodies.JobPayload``), ``GET api/v1/jobs?filter=jid_gt_A,jid_lt_B`` and its siblings,
``GET api/v1/tasks?filter=jobLabel_eq_J[,taskLabel_eq_T]``, ``GET get_log_file``, and the
``kill`` action of ``PUT jobs_multi`` and ``PUT tasks_multi``. Submission also refuses what
Conductor would (an unknown or inactive project, task frames it cannot read, a file not uploaded
when ``local_upload`` is true).

A job is ``syncing`` for its first ``task_seconds / 2`` (Conductor's sync phase before pending);
a task is ``pending`` for at least ``task_seconds`` after its clock starts, until one of the
stand-in render nodes is free, then ``running`` while its real command runs there
(``node/runner.py``), then ``success`` or ``failed`` by the process's exit code. A task holding a
frame that was in ``fail_frames`` when the job was submitted fails when the stand-in renderer
reaches that frame (on the frame's first ``fail_attempts`` renders; 0: every render). A task
holding a frame that was in ``preempt_frames`` loses its node when the renderer reaches that frame
(on its first ``preempt_attempts`` renders): as Conductor does with the job's ``autoretry_policy``
``{"preempted": {"max_retries": N}}``, it goes back to ``pending`` and runs again, up to N times,
then stays ``preempted``; a job whose settled tasks include a preempted one and no failed or
killed one is ``preempted`` ("Instance was preempted"). A success reads ``downloaded`` once a
downloader reports it so (``POST /downloads/status``, ``downloads.py``).

Native scout: when a job has ``scout_frames``, tasks holding none of them start ``holding``; no
client releases them through the API (the user presses continue in the dashboard), so the
sandbox's stand-in is the admin route ``POST /_sandbox/release/<jid>``. A kill makes the job's
(or the named) tasks ``killed``, finished or not (the simplest rule a client can rely on).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_conductor.conductor_cloud.api.status import (
    JobStatus,
    TaskStatus,
    job_status_from_tasks,
)
from prefect_conductor.conductor_cloud.errors import FrameSpecError
from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec
from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.fixture_catalog import ACCOUNT_ID
from prefect_conductor.sandbox.node.runner import log_path
from prefect_conductor.sandbox.routes import bodies
from prefect_conductor.sandbox.routes.evidence import JID, TID
from prefect_conductor.sandbox.routes.tokens import error


def _frames(spec: str, field: str) -> set[int]:
    """The frames of a spec; FrameSpecError names ``field`` (an empty spec is no frames)."""
    if not spec.strip():
        return set()
    try:
        return set(parse_frame_spec(spec, field=field))
    except ValueError:  # a number too long for int()
        raise FrameSpecError(field, spec[:40], "a frame number is too long") from None


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def _keeps(term: str, jid: int, submitted_at: float) -> bool:
    """Whether a job passes one (gate-checked) ``filter`` term of the job listing."""
    kind, value = term.rsplit("_", 1)
    if kind == "jid_eq":
        return jid == int(value)
    if kind == "jid_gt":
        return jid > int(value)
    if kind == "jid_lt":
        return jid < int(value)
    if kind == "created_gt":
        return _day(submitted_at) > value
    if kind == "created_lt":
        return _day(submitted_at) < value
    return term == f"account_id_eq_{ACCOUNT_ID}"


class Jobs:
    """The job endpoints of one sandbox."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.store = context.store

    # submission ---------------------------------------------------------------------------

    def _refusal(self, payload: bodies.JobPayload) -> str | None:
        """Why Conductor would refuse this (well-typed) payload, or None."""
        projects = {p["name"]: p.get("status") for p in self.context.catalog["projects"]}
        if projects.get(payload.project) != "active":
            return f"project: unknown or inactive project {payload.project!r}"
        try:
            for index, task in enumerate(payload.tasks_data):
                if not _frames(task.frames, f"tasks_data.{index}.frames"):
                    return f"tasks_data.{index}.frames: no frames given"
            _frames(payload.scout_frames, "scout_frames")
        except FrameSpecError as problem:
            return str(problem)
        if payload.local_upload:
            for entry in payload.upload_files:
                if entry.md5 is None or not self.store.has_upload(entry.md5):
                    return f"upload_files: {entry.destination} was never uploaded"
        return None

    async def submit(self, request: Request) -> Response:
        """``POST jobs/``: store the job and its tasks; 201 with the new 5-digit job id."""
        try:
            payload = bodies.parse(bodies.JobPayload, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        refusal = self._refusal(payload)
        if refusal is not None:
            return error(400, refusal)
        scout = _frames(payload.scout_frames, "scout_frames")
        failing = set(self.store.setting("fail_frames"))
        preempting = set(self.store.setting("preempt_frames"))
        stored = payload.model_dump(mode="json", exclude_unset=True)
        now = time.time()
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (payload, submitted_at) VALUES (?, ?)", (json.dumps(stored), now)
            )
            jid = int(cursor.lastrowid or 0)
            for tid, task in enumerate(payload.tasks_data):
                frames = _frames(task.frames, "frames")
                held = bool(scout) and not (frames & scout)
                db.execute(
                    "INSERT INTO tasks"
                    " (jid, tid, frames, command, started_at, will_fail, will_preempt)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        jid,
                        tid,
                        task.frames,
                        task.command,
                        None if held else now,
                        int(bool(frames & failing)),
                        int(bool(frames & preempting)),
                    ),
                )
        text = f"{jid:05d}"
        return JSONResponse(
            {"body": "job submitted.", "jobid": text, "status": "success", "uri": f"/jobs/{text}"},
            status_code=201,
        )

    # the clock ----------------------------------------------------------------------------

    def task_status(self, task: Any, job_killed: float) -> TaskStatus:
        """A task's state now: held, waiting for a node, its process running, or how the
        process ended (``node/runner.py``); a killed job's or task's is ``killed``; one whose
        node was preempted with no retry left is ``preempted``."""
        if job_killed or task["killed"]:
            return TaskStatus.KILLED
        if task["preempted"]:
            return TaskStatus.PREEMPTED
        if task["started_at"] is None:
            return TaskStatus.HOLDING
        if task["run_ended"] is not None:
            if task["exit_code"] != 0:
                return TaskStatus.FAILED
            return TaskStatus.DOWNLOADED if task["downloaded"] else TaskStatus.SUCCESS
        if task["run_started"] is not None:
            return TaskStatus.RUNNING
        return TaskStatus.PENDING

    def frames_of(self, task: Any) -> tuple[int, ...]:
        """A stored task's frames, in order (its spec was checked at submission)."""
        return tuple(sorted(_frames(task["frames"], "frames")))

    def _tasks(self, jid: int) -> list[Any]:
        return self.store.query("SELECT * FROM tasks WHERE jid = ? ORDER BY tid", jid)

    def job_status(self, row: Any, statuses: list[TaskStatus]) -> JobStatus:
        """The job's state: ``syncing`` first, then what its tasks add up to."""
        summary = job_status_from_tasks(statuses)
        seconds = float(self.store.setting("task_seconds"))
        syncing = time.time() - float(row["submitted_at"]) < seconds / 2
        if syncing and summary in (JobStatus.PENDING, JobStatus.HOLDING):
            return JobStatus.SYNCING
        return summary

    def job_view(self, row: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A job as ``GET api/v1/jobs`` shows it: only fields a Conductor client shows in a
        listing (the desktop client's ``fields=``, the dashboard's job records), so no
        ``metadata``: nothing a real account's listing may lack is there to lean on."""
        payload = payload if payload is not None else json.loads(row["payload"])
        statuses = [self.task_status(t, float(row["killed"])) for t in self._tasks(row["jid"])]
        jid = f"{row['jid']:05d}"
        status = self.job_status(row, statuses)
        details = ""
        if row["killed"]:
            details = "Killed by user"
        elif status is JobStatus.PREEMPTED:
            details = "Instance was preempted"
        created = datetime.fromtimestamp(float(row["submitted_at"]), UTC)
        owner = payload.get("owner", "")
        project = payload.get("project", "")
        return {
            "jid": jid,
            "id": jid,
            "jobLabel": jid,
            "title": payload.get("job_title", "Unknown job title"),
            "status": str(status),
            "statusDetails": details,
            "created": created.isoformat().replace("+00:00", "Z"),
            "timeCreated": int(float(row["submitted_at"]) * 1_000_000),
            "submittedBy": owner,
            "user": owner,
            "accountId": ACCOUNT_ID,
            "project": project,
            "projectId": f"{ACCOUNT_ID}|{project}",
            "output_path": payload.get("output_path", ""),
            "location": payload.get("location", ""),
            "selfLink": f"/api/jobs/{jid}",
        }

    def _job_row(self, jid: str) -> Any:
        if not (jid.isascii() and jid.isdigit() and len(jid) <= 9):
            return None
        rows = self.store.query("SELECT * FROM jobs WHERE jid = ?", int(jid))
        return rows[0] if rows else None

    # reading ------------------------------------------------------------------------------

    async def list(self, request: Request) -> Response:
        """``GET api/v1/jobs[?filter=...][&fields=...]`` (terms and fields checked by the gate)."""
        terms = [t for t in request.query_params.get("filter", "").split(",") if t]
        fields = [f for f in request.query_params.get("fields", "").split(",") if f]
        views = []
        for row in self.store.query("SELECT * FROM jobs ORDER BY jid"):
            if all(_keeps(t, int(row["jid"]), float(row["submitted_at"])) for t in terms):
                view = self.job_view(row)
                views.append({k: view[k] for k in fields if k in view} if fields else view)
        return JSONResponse({"data": views})

    def task_view(self, task: Any, job_killed: float) -> dict[str, Any]:
        """A task as ``GET api/v1/tasks`` shows it."""
        return {
            "jobLabel": f"{task['jid']:05d}",
            "taskLabel": f"{task['tid']:03d}",
            "frames": task["frames"],
            "command": task["command"],
            "status": str(self.task_status(task, job_killed)),
        }

    async def tasks(self, request: Request) -> Response:
        """``GET api/v1/tasks?filter=jobLabel_eq_J[,taskLabel_eq_T]``; an unknown job has none."""
        terms = dict(
            t.rsplit("_", 1) for t in request.query_params.get("filter", "").split(",") if t
        )
        if "jobLabel_eq" not in terms:
            return error(400, "filter: jobLabel_eq_<jid> is required")
        row = self._job_row(terms["jobLabel_eq"])
        tasks = [] if row is None else self._tasks(row["jid"])
        if "taskLabel_eq" in terms:
            tasks = [t for t in tasks if t["tid"] == int(terms["taskLabel_eq"])]
        killed = 0.0 if row is None else float(row["killed"])
        return JSONResponse({"data": [self.task_view(t, killed) for t in tasks]})

    async def task_log(self, request: Request) -> Response:
        """``GET get_log_file?job=&task=&num_lines[]=``: the log lines past ``num_lines[]``."""
        jid, tid = request.query_params["job"], request.query_params["task"]
        offset = request.query_params.get("num_lines[]", "0")
        if not re.fullmatch(JID, jid):
            return error(400, "job: expected a 5-digit job id")
        if not re.fullmatch(TID, tid):
            return error(400, "task: expected a 3-digit task id")
        if not (offset.isdigit() and len(offset) < 10):
            return error(400, "num_lines[]: expected a line count")
        row = self._job_row(jid)
        rows = (
            self.store.query("SELECT * FROM tasks WHERE jid = ? AND tid = ?", row["jid"], int(tid))
            if row is not None
            else []
        )
        if not rows:
            return error(404, f"no task {tid} in job {jid}")
        task = rows[0]
        status = self.task_status(task, float(row["killed"]))
        lines = _log_lines(log_path(self.context, task["jid"], task["tid"]), status)
        start = int(offset)
        started = float(task["started_at"] or row["submitted_at"])
        return JSONResponse(
            {
                "logs": [
                    {
                        "container_id": f"sandbox-{jid}-{tid}",
                        "instance_name": "sandbox-instance",
                        "log": lines[start:],
                        "timestamp": datetime.fromtimestamp(started, UTC).isoformat(),
                    }
                ],
                "new_num_lines": [len(lines)],
                "status_description": "",
                "task_status": str(status),
            }
        )

    # acting -------------------------------------------------------------------------------

    async def jobs_multi(self, request: Request) -> Response:
        """``PUT jobs_multi {"action": "kill", "jobids": [...]}``."""
        try:
            body = bodies.parse(bodies.KillJobs, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        if body.action != "kill":
            return error(400, f"action: {body.action[:40]!r} is not kill")
        bad = [j for j in body.jobids if not re.fullmatch(JID, j)]
        if bad:
            return error(400, f"jobids: {bad[0][:40]!r} is not a 5-digit job id")
        for jid in body.jobids:
            self.store.execute(
                "UPDATE jobs SET killed = ? WHERE jid = ? AND killed = 0", time.time(), int(jid)
            )
        return JSONResponse(
            {"body": "success", "message": f"Jobs {body.jobids} have been {body.action}."}
        )

    async def tasks_multi(self, request: Request) -> Response:
        """``PUT tasks_multi {"action": "kill", "jobid": "03096", "taskids": ["050", ...]}``."""
        try:
            body = bodies.parse(bodies.KillTasks, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        if body.action != "kill":
            return error(400, f"action: {body.action[:40]!r} is not kill")
        if not re.fullmatch(JID, body.jobid):
            return error(400, f"jobid: {body.jobid[:40]!r} is not a 5-digit job id")
        bad = [t for t in body.taskids if not re.fullmatch(TID, t)]
        if bad:
            return error(400, f"taskids: {bad[0][:40]!r} is not a 3-digit task id")
        now = time.time()
        for tid in body.taskids:
            self.store.execute(
                "UPDATE tasks SET killed = ? WHERE jid = ? AND tid = ? AND killed = 0",
                now,
                int(body.jobid),
                int(tid),
            )
        return JSONResponse(
            {
                "body": "success",
                "message": f' {len(body.taskids)} Tasks set to "{body.action}"',
            }
        )

    def release(self, jid: int) -> bool:
        """Start the clock of a job's held tasks; False if there is no such job."""
        if not self.store.query("SELECT 1 FROM jobs WHERE jid = ?", jid):
            return False
        self.store.execute(
            "UPDATE tasks SET started_at = ? WHERE jid = ? AND started_at IS NULL", time.time(), jid
        )
        return True


def _log_lines(log: Path, status: TaskStatus) -> list[str]:
    """What a task's process wrote so far (nothing before it started)."""
    if status in (TaskStatus.PENDING, TaskStatus.HOLDING):
        return []
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    if status is TaskStatus.KILLED:
        lines.append("sandbox: killed by user")
    return lines
