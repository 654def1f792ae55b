"""The sandbox's job page: ``GET /job/<jid>``, the dashboard link a submission prints.

Conductor's real dashboard shows a job's tasks, their states and frames, and where the outputs go;
the sandbox answers the same link with one plain HTML page (refreshing itself every 2 s while tasks
run), so the demo ends at a page a person can open. Like the admin API, it answers loopback peers
only, and without a token: a browser on this machine has none.
"""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.sandbox.routes.jobs import Jobs

STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "code{font-size:90%}.success{color:#080}.failed,.killed,.preempted{color:#b00}"
)


def _row(*cells: str) -> str:
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def render(view: dict[str, Any], payload: dict[str, Any], tasks: list[dict[str, str]]) -> str:
    """The page for one job: summary, tasks with states and frames, outputs and uploads."""
    e = html.escape
    finished = all(TaskStatus.parse(t["status"]).finished for t in tasks)
    refresh = "" if finished else '<meta http-equiv="refresh" content="2">'
    uploads = payload.get("upload_files") or []
    rows = "".join(
        _row(
            e(t["tid"]),
            e(t["frames"]),
            f'<span class="{e(t["status"])}">{e(t["status"])}</span>',
            f"<code>{e(t['command'])}</code>",
        )
        for t in tasks
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8">{refresh}
<title>Job {e(view["jid"])}: {e(view["title"])}</title><style>{STYLE}</style></head>
<body>
<p>Conductor sandbox: a local stand-in for Conductor's API on this machine; each task's command
ran on a stand-in render node whose renderer writes small sample frames.</p>
<h1>Job {e(view["jid"])}: {e(view["title"])}</h1>
<table>
{_row("status", e(view["status"]))}
{_row("project", e(str(view["project"] or "")))}
{_row("instance type", e(str(payload.get("instance_type") or "")))}
{_row("tasks", str(len(tasks)))}
{_row("outputs", f"<code>{e(str(payload.get('output_path') or ''))}</code>")}
{_row("uploads", f"{len(uploads)} files, {int(payload.get('upload_size') or 0)} bytes")}
{_row("metadata", f"<code>{e(json.dumps(payload.get('metadata') or {}))}</code>")}
</table>
<h2>Tasks</h2>
<table><tr><th>task</th><th>frames</th><th>state</th><th>command</th></tr>
{rows}
</table>
</body></html>
"""


class JobPage:
    """``GET /job/<jid>``: the job's page, from the same store the API reads."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    async def page(self, request: Request) -> Response:
        jid = request.path_params["jid"]
        row = self.jobs._job_row(jid)
        if row is None:
            return HTMLResponse(f"<p>No job {html.escape(jid)} in this sandbox.</p>", 404)
        payload = json.loads(row["payload"])
        tasks = [
            {
                "tid": f"{t['tid']:03d}",
                "frames": str(t["frames"]),
                "command": str(t["command"]),
                "status": str(self.jobs.task_status(t, float(row["killed"]))),
            }
            for t in self.jobs._tasks(row["jid"])
        ]
        return HTMLResponse(render(self.jobs.job_view(row, payload), payload, tasks))
