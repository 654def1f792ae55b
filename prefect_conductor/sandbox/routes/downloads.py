"""Downloads: the fake farm's stand-in renderer, the downloads pages, signed GETs and status.

Conductor's side, in the forms its clients send (``evidence.py``):

* ``POST /jobs/<jid>/downloads?limit=<n>&start_cursor=<cursor>`` with ``{"tids": [...] | null}``
  answers 201 ``{"downloads": [task, ...], "next_cursor": ...}``: one record per finished,
  successful task (``download_id``, ``job_id``, ``task_id``, ``output_dir`` = the job's
  ``output_path``, ``size``, ``files[]`` of ``url``, ``md5``, ``relative_path``, ``size``,
  ``job_id``, ``task_id``, ``output_dir``), in task order; the cursor is opaque (here: the next
  task id) and
  ``null`` on the last page. Tasks still rendering, failed or killed are not listed.
* ``POST /downloads/status`` ``{"download_id", "status", "bytes_downloaded",
  "bytes_to_download"}``: ``downloaded`` makes the task read ``downloaded`` in the task listing
  (as a real downloader's report does), ``pending`` makes it ``success`` again.

The fake's own (not Conductor's): ``GET /_storage/out/<md5 hex>?expires=&signature=``, the
signed URL of an output file, standing for the cloud bucket's hashstore URL. It needs no token
(one that carries a bearer is counted, as for uploads) and serves the bytes with their length.

**Outputs.** A task's outputs are the files its real command wrote below the job's
``output_path`` on its stand-in render node (``node/runner.py``), stored content-addressed in
``files/<md5 hex>`` as uploads are; each one's ``relative_path`` is its place below
``output_path``. Faults come from ``faults.py`` (``drop_mid`` and ``corrupt`` on
``GET /_storage/out/*``, a 5xx on ``POST /jobs/*/downloads``) and ``fail_frames``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import time
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.routes import bodies
from prefect_conductor.sandbox.routes.evidence import JID, TID
from prefect_conductor.sandbox.routes.jobs import Jobs
from prefect_conductor.sandbox.routes.storage import GRANT_SECONDS
from prefect_conductor.sandbox.routes.tokens import error

MAX_PAGE = 1000
WRITE_CHUNK = 1024 * 1024
_MD5_HEX = re.compile(r"[0-9a-f]{32}")


class DownloadsBody(bodies.Strict):
    """``{"tids": [...] | null}`` (ciocore job_downloader.py:62-90)."""

    tids: list[Annotated[StrictStr, Field(max_length=16)] | StrictInt] | None


class StatusBody(bodies.Strict):
    """``POST /downloads/status`` (ciocore downloader/reporter.py:61-71)."""

    download_id: Annotated[StrictStr, Field(max_length=64)]
    status: Literal["downloaded", "pending", "downloading"]
    bytes_downloaded: bodies.Count
    bytes_to_download: bodies.Count


class Downloads:
    """The download endpoints of one sandbox."""

    def __init__(self, context: SandboxContext, jobs: Jobs) -> None:
        self.context = context
        self.store = context.store
        self.jobs = jobs

    # Conductor's endpoints ----------------------------------------------------------------

    def _signed(self, request: Request, md5: str) -> str:
        hexname = base64.b64decode(md5).hex()
        expires = int(time.time()) + GRANT_SECONDS
        signature = self.context.sign(f"out:{hexname}:{expires}")
        base = str(request.base_url).rstrip("/")
        return f"{base}/_storage/out/{hexname}?expires={expires}&signature={signature}"

    def _record(self, request: Request, job: Any, task: Any) -> dict[str, Any]:
        jid, tid = f"{task['jid']:05d}", f"{task['tid']:03d}"
        output_dir = str(json.loads(job["payload"]).get("output_path") or "")
        rows = self.store.query(
            "SELECT * FROM outputs WHERE jid = ? AND tid = ? ORDER BY relative_path",
            task["jid"],
            task["tid"],
        )
        files = [
            {
                "url": self._signed(request, row["md5"]),
                "md5": row["md5"],
                "relative_path": row["relative_path"],
                "size": row["size"],
                "job_id": jid,
                "task_id": tid,
                "output_dir": output_dir,  # ciocore base_downloader.py:380 reads it per file
            }
            for row in rows
        ]
        return {
            "download_id": f"{jid}-{tid}",
            "job_id": jid,
            "task_id": tid,
            "output_dir": output_dir,
            "size": sum(item["size"] for item in files),
            "files": files,
        }

    async def listing(self, request: Request) -> Response:
        """``POST /jobs/<jid>/downloads?limit=&start_cursor=``: a page of finished tasks."""
        jid = request.path_params["jid"]
        limit = request.query_params.get("limit", "")
        cursor = request.query_params.get("start_cursor", "")
        if not re.fullmatch(JID, jid):
            return error(400, "jid: expected a 5-digit job id")
        if not (limit.isdigit() and len(limit) <= 4 and 1 <= int(limit) <= MAX_PAGE):
            return error(400, f"limit: expected a page size from 1 to {MAX_PAGE}")
        if cursor and not re.fullmatch(r"\d{1,6}", cursor):
            return error(400, "start_cursor: not a cursor this server issued")
        try:
            body = bodies.parse(DownloadsBody, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        wanted = None
        if body.tids is not None:
            if not all(re.fullmatch(r"\d{1,3}", str(t)) for t in body.tids):
                return error(400, "tids: expected task ids")
            wanted = {int(t) for t in body.tids}
        jobs = self.store.query("SELECT * FROM jobs WHERE jid = ?", int(jid))
        if not jobs:
            return error(404, f"no job {jid}")
        job = jobs[0]
        start = int(cursor or 0)
        ready = [
            task
            for task in self.store.query(
                "SELECT * FROM tasks WHERE jid = ? AND tid >= ? ORDER BY tid", int(jid), start
            )
            if (wanted is None or task["tid"] in wanted)
            and self.jobs.task_status(task, float(job["killed"])).succeeded
        ]
        page = ready[: int(limit)]
        records = [self._record(request, job, task) for task in page]
        more = len(ready) > len(page)
        return JSONResponse(
            {"downloads": records, "next_cursor": str(page[-1]["tid"] + 1) if more else None},
            status_code=201,
        )

    async def report(self, request: Request) -> Response:
        """``POST /downloads/status``: ``downloaded`` marks the task, ``pending`` unmarks it."""
        try:
            body = bodies.parse(StatusBody, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        match = re.fullmatch(rf"({JID})-({TID})", body.download_id)
        rows = (
            self.store.query(
                "SELECT * FROM tasks WHERE jid = ? AND tid = ?",
                int(match.group(1)),
                int(match.group(2)),
            )
            if match
            else []
        )
        if not rows:
            return error(404, f"download_id: no download {body.download_id[:40]!r}")
        if body.status != "downloading":
            marked = time.time() if body.status == "downloaded" else 0.0
            self.store.execute(
                "UPDATE tasks SET downloaded = ? WHERE jid = ? AND tid = ?",
                marked,
                rows[0]["jid"],
                rows[0]["tid"],
            )
        return JSONResponse({"download_id": body.download_id, "status": body.status})

    # the fake's storage -------------------------------------------------------------------

    async def fetch(self, request: Request) -> Response:
        """``GET /_storage/out/<md5 hex>?expires=&signature=``: an output file's bytes."""
        hexname = request.path_params["name"]
        expires = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        if not _MD5_HEX.fullmatch(hexname):
            return error(404, "no such file")
        if not hmac.compare_digest(signature, self.context.sign(f"out:{hexname}:{expires}")):
            return error(403, "the storage URL's signature does not match")
        if not expires.isdigit() or int(expires) < time.time():
            return error(403, "the storage URL has expired")
        path = self.context.blob_path(bytes.fromhex(hexname))
        if not path.is_file():
            return error(404, "no such file")
        return FileResponse(path, media_type="application/octet-stream")
