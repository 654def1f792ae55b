"""A local Conductor-compatible HTTP API: the embedded default and every test's peer.

It serves the paths and shapes Conductor's own client uses (research/conductor-client-facts.md
sections 1-3) plus the job/task status endpoints we assume (``status.py``):

* token exchange at ``/api/oauth_jwt`` (POST body, or the reference client's GET query) issuing
  HS256 JWTs whose ``aud`` satisfies the reference client's domain check;
* the catalogue from ``fixtures/catalog.json``;
* ``get_upload_urls`` with server-side dedupe by md5, signed storage URLs (HMAC, 1 h expiry) that
  verify ``Content-MD5`` and the claimed md5 before storing, multipart parts and completion;
  blobs land in ``files/<md5 hex>``, never at a path a client chose;
* ``POST jobs/`` that checks the required keys, the project and that every file was uploaded;
  tasks that move pending -> running -> success on a clock (``task_seconds``), a frame that can be
  made to fail, and Conductor's native scout hold (released through the admin API);
* admin endpoints under ``/_sandbox/`` for tests: faults, config, state, reset, release.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_conductor.conductor_cloud.catalog import fixture_records
from prefect_conductor.conductor_cloud.frames import parse_frame_spec
from prefect_conductor.conductor_cloud.sandbox.faults import (
    DroppedConnection,
    FaultBook,
    FaultMiddleware,
    FaultRule,
)
from prefect_conductor.conductor_cloud.sandbox.store import Store
from prefect_conductor.conductor_cloud.status import TaskStatus, job_status_from_tasks

TOKEN_SECONDS = 3600
GRANT_SECONDS = 3600
ACCOUNT_ID = "sandbox-account"
REQUIRED_JOB_KEYS = ("instance_type", "project", "tasks_data", "output_path")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


class Sandbox:
    """The sandbox's state and request handlers, bound to one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"
        self.parts_dir = data_dir / "parts"
        for folder in (self.files_dir, self.parts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.store = Store(data_dir / "sandbox.sqlite")
        self.secret = self._load_or_create("server_secret", lambda: secrets.token_hex(32))
        key_file = data_dir / "api_key.json"
        if not key_file.exists():
            key = {
                "client_id": f"sandbox-{secrets.token_hex(6)}",
                "private_key": secrets.token_hex(32),
            }
            key_file.write_text(json.dumps(key))
            key_file.chmod(0o600)
        self.api_key: dict[str, str] = json.loads(key_file.read_text())
        self.catalog = fixture_records()
        self.faults = FaultBook()

    def _load_or_create(self, name: str, make: Any) -> str:
        path = self.data_dir / name
        if not path.exists():
            path.write_text(make())
            path.chmod(0o600)
        return path.read_text().strip()

    # auth ---------------------------------------------------------------------------------

    def issue_token(self, audience: str) -> str:
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "aud": audience,
            "account": ACCOUNT_ID,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "jti": secrets.token_hex(8),
        }
        body = _b64url(json.dumps(claims).encode())
        signature = hmac.new(self.secret.encode(), f"{header}.{body}".encode(), "sha256").digest()
        token = f"{header}.{body}.{_b64url(signature)}"
        self.store.add_token(token, now + TOKEN_SECONDS)
        return token

    async def oauth(self, request: Request) -> Response:
        fields: dict[str, str] = {k: v for k, v in request.query_params.items()}
        if request.method == "POST":
            raw = await request.body()
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    fields.update({k: str(v) for k, v in json.loads(raw or b"{}").items()})
                except (ValueError, AttributeError):
                    return _error(400, "body is not JSON")
            else:
                fields.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
        if not (
            hmac.compare_digest(client_id, self.api_key["client_id"])
            and hmac.compare_digest(secret, self.api_key["private_key"])
        ):
            return _error(401, "invalid client credentials")
        audience = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "access_token": self.issue_token(audience),
                "expires_in": TOKEN_SECONDS,
                "token_type": "Bearer",
                "scope": "owner admin user",
            }
        )

    def authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.store.token_valid(token.strip())

    # catalogue ----------------------------------------------------------------------------

    async def projects(self, request: Request) -> Response:
        return JSONResponse({"data": self.catalog["projects"]})

    async def instance_types(self, request: Request) -> Response:
        return JSONResponse({"data": self.catalog["instance_types"]})

    async def packages(self, request: Request) -> Response:
        return JSONResponse({"data": self.catalog["packages"]})

    async def extra_env(self, request: Request) -> Response:
        return JSONResponse({"data": self.catalog["extra_environment"]})

    # uploads ------------------------------------------------------------------------------

    def _grant(self, request: Request, kind: str, md5: str, size: int, **extra: Any) -> str:
        token = secrets.token_urlsafe(16)
        expires = time.time() + GRANT_SECONDS
        self.store.execute(
            "INSERT INTO grants (token, kind, md5, size, upload_id, part_number, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            token,
            kind,
            md5,
            size,
            extra.get("upload_id"),
            extra.get("part_number"),
            expires,
        )
        signature = hmac.new(self.secret.encode(), f"{token}:{int(expires)}".encode(), "sha256")
        base = str(request.base_url).rstrip("/")
        return f"{base}/_storage/{token}?expires={int(expires)}&signature={signature.hexdigest()}"

    async def get_upload_urls(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            files = body["upload_files"]
            wanted = [(str(f["path"]), str(f["hash"]), int(f["size"])) for f in files]
        except (ValueError, KeyError, TypeError):
            return _error(400, "upload_files must be a list of {path, hash, size}")
        for path, md5, _size in wanted:
            digest = decode_md5(md5)
            if digest is None or len(digest) != 16:
                return _error(400, f"hash of {path!r} is not a base64 md5")
        threshold = int(self.store.setting("multipart_threshold"))
        part_size = int(self.store.setting("part_size"))
        single, multi = [], []
        for path, md5, size in wanted:
            if self.store.has_upload(md5):
                continue
            if size <= threshold:
                url = self._grant(request, "single", md5, size)
                single.append({"filePath": path, "fileSize": size, "preSignedURL": url})
                continue
            upload_id = secrets.token_hex(12)
            count = max(1, -(-size // part_size))
            self.store.execute(
                "INSERT INTO multipart (upload_id, md5, size, part_size, parts) VALUES (?,?,?,?,?)",
                upload_id,
                md5,
                size,
                part_size,
                count,
            )
            parts = [
                {
                    "partNumber": n,
                    "url": self._grant(
                        request, "part", md5, size, upload_id=upload_id, part_number=n
                    ),
                }
                for n in range(1, count + 1)
            ]
            multi.append(
                {
                    "uploadID": upload_id,
                    "filePath": path,
                    "md5": md5,
                    "partSize": part_size,
                    "fileSize": size,
                    "parts": parts,
                }
            )
        if not single and not multi:
            return Response(status_code=204)
        return JSONResponse({"singlePartURLs": single, "multiPartURLs": multi})

    async def storage_put(self, request: Request) -> Response:
        token = request.path_params["token"]
        expires = request.query_params.get("expires", "0")
        signature = request.query_params.get("signature", "")
        expected = hmac.new(self.secret.encode(), f"{token}:{expires}".encode(), "sha256")
        if not hmac.compare_digest(signature, expected.hexdigest()):
            return _error(403, "bad signature")
        if not expires.isdigit() or int(expires) < time.time():
            return _error(403, "signed URL expired")
        rows = self.store.query("SELECT * FROM grants WHERE token = ?", token)
        if not rows:
            return _error(403, "unknown upload grant")
        grant = rows[0]
        body = await request.body()
        digest = hashlib.md5(body).digest()
        claimed = request.headers.get("content-md5")
        if claimed is not None and claimed.strip() != base64.b64encode(digest).decode():
            return _error(400, "Content-MD5 does not match the body")
        if grant["kind"] == "single":
            if base64.b64encode(digest).decode() != grant["md5"] or len(body) != grant["size"]:
                return _error(400, "the body does not match the md5 and size it was granted for")
            self._store_blob(grant["md5"], body)
            return Response(status_code=200, headers={"ETag": f'"{digest.hex()}"'})
        folder = self.parts_dir / str(grant["upload_id"])
        folder.mkdir(exist_ok=True)
        part = folder / f"{int(grant['part_number']):05d}"
        part.with_suffix(".tmp").write_bytes(body)
        part.with_suffix(".tmp").replace(part)
        return Response(status_code=200, headers={"ETag": f'"{digest.hex()}"'})

    def _store_blob(self, md5: str, body: bytes) -> None:
        name = base64.b64decode(md5).hex()  # a hex digest: no path a client could steer
        target = self.files_dir / name
        temp = target.with_suffix(".tmp")
        temp.write_bytes(body)
        temp.replace(target)
        self.store.add_upload(md5, len(body))

    async def multipart_complete(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            upload_id = str(body["uploadID"])
            parts = sorted(int(p["partNumber"]) for p in body["completedParts"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected uploadID and completedParts")
        rows = self.store.query("SELECT * FROM multipart WHERE upload_id = ?", upload_id)
        if not rows:
            return _error(404, "unknown uploadID")
        upload = rows[0]
        if parts != list(range(1, upload["parts"] + 1)):
            return _error(400, f"expected parts 1..{upload['parts']}, got {parts}")
        if body.get("hash") not in (None, upload["md5"]):
            return _error(400, "hash does not match the upload")
        folder = self.parts_dir / upload_id
        digest = hashlib.md5()
        chunks = []
        for number in parts:
            path = folder / f"{number:05d}"
            if not path.exists():
                return _error(400, f"part {number} was never uploaded")
            data = path.read_bytes()
            digest.update(data)
            chunks.append(data)
        if base64.b64encode(digest.digest()).decode() != upload["md5"]:
            return _error(400, "the assembled file does not match its md5")
        self._store_blob(upload["md5"], b"".join(chunks))
        for number in parts:
            (folder / f"{number:05d}").unlink(missing_ok=True)
        folder.rmdir()
        return JSONResponse({"status": "complete"})

    # jobs ---------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        missing = [key for key in REQUIRED_JOB_KEYS if key not in payload]
        if missing:
            return _error(400, f"missing required keys: {', '.join(missing)}")
        active = {p["name"] for p in self.catalog["projects"] if p.get("status") == "active"}
        if payload["project"] not in active:
            return _error(400, f"unknown or inactive project {payload['project']!r}")
        tasks = payload["tasks_data"]
        if not isinstance(tasks, list) or not all(
            isinstance(t, dict) and "command" in t and "frames" in t for t in tasks
        ):
            return _error(400, "tasks_data must be a list of {command, frames}")
        if payload.get("local_upload", True):
            for entry in payload.get("upload_files") or []:
                if not self.store.has_upload(str(entry.get("md5"))):
                    return _error(400, f"file was not uploaded: {entry.get('destination')}")
        scout = _frames_or_empty(str(payload.get("scout_frames") or ""))
        failing = set(self.store.setting("fail_frames"))
        now = time.time()
        with self.store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (payload, submitted_at) VALUES (?, ?)", (json.dumps(payload), now)
            )
            jid = int(cursor.lastrowid or 0)
            for tid, task in enumerate(tasks):
                frames = _frames_or_empty(str(task["frames"]))
                held = bool(scout) and not (frames & scout)
                db.execute(
                    "INSERT INTO tasks (jid, tid, frames, command, started_at, will_fail)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        jid,
                        tid,
                        task["frames"],
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

    def task_status(self, row: Any, killed: bool) -> TaskStatus:
        if killed:
            return TaskStatus.KILLED
        if row["started_at"] is None:
            return TaskStatus.HOLDING
        elapsed = time.time() - float(row["started_at"])
        seconds = float(self.store.setting("task_seconds"))
        if elapsed < seconds:
            return TaskStatus.PENDING
        if elapsed < 2 * seconds:
            return TaskStatus.RUNNING
        return TaskStatus.FAILED if row["will_fail"] else TaskStatus.SUCCESS

    def job_view(self, row: Any) -> dict[str, Any]:
        payload = json.loads(row["payload"])
        tasks = self.store.query("SELECT * FROM tasks WHERE jid = ? ORDER BY tid", row["jid"])
        statuses = [self.task_status(t, bool(row["killed"])) for t in tasks]
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

    async def list_jobs(self, request: Request) -> Response:
        rows = self.store.query("SELECT * FROM jobs ORDER BY jid")
        jobs = [self.job_view(row) for row in rows]
        for part in filter(None, request.query_params.get("filter", "").split(",")):
            jobs = _apply_filter(jobs, part)
        return JSONResponse({"data": jobs})

    def _job_row(self, jid: str) -> Any:
        if not jid.isdigit():
            return None
        rows = self.store.query("SELECT * FROM jobs WHERE jid = ?", int(jid))
        return rows[0] if rows else None

    async def get_job(self, request: Request) -> Response:
        row = self._job_row(request.path_params["jid"])
        if row is None:
            return _error(404, "no such job")
        return JSONResponse({"data": self.job_view(row)})

    async def get_tasks(self, request: Request) -> Response:
        row = self._job_row(request.path_params["jid"])
        if row is None:
            return _error(404, "no such job")
        tasks = self.store.query("SELECT * FROM tasks WHERE jid = ? ORDER BY tid", row["jid"])
        return JSONResponse(
            {
                "data": [
                    {
                        "tid": f"{t['tid']:03d}",
                        "frames": t["frames"],
                        "command": t["command"],
                        "status": str(self.task_status(t, bool(row["killed"]))),
                    }
                    for t in tasks
                ]
            }
        )

    async def jobs_multi(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            action, jids = body["action"], [int(j) for j in body["jobids"]]
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected action and jobids")
        if action == "kill":
            for jid in jids:
                self.store.execute("UPDATE jobs SET killed = 1 WHERE jid = ?", jid)
        elif action == "release":
            for jid in jids:
                self.release(jid)
        else:
            return _error(400, f"unknown action {action!r}")
        return JSONResponse({"body": "success", "message": f"{action} {len(jids)} jobs"})

    def release(self, jid: int) -> None:
        self.store.execute(
            "UPDATE tasks SET started_at = ? WHERE jid = ? AND started_at IS NULL", time.time(), jid
        )

    async def task_log(self, request: Request) -> Response:
        row = self._job_row(request.query_params.get("job", ""))
        tid = request.query_params.get("task", "")
        if row is None or not tid.isdigit():
            return _error(404, "no such task")
        rows = self.store.query(
            "SELECT * FROM tasks WHERE jid = ? AND tid = ?", row["jid"], int(tid)
        )
        if not rows:
            return _error(404, "no such task")
        status = self.task_status(rows[0], bool(row["killed"]))
        return JSONResponse(
            {"logs": [], "new_num_lines": [0], "status_description": "", "task_status": str(status)}
        )

    # admin --------------------------------------------------------------------------------

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
            return JSONResponse({"faults": 0})
        try:
            rules = [FaultRule.from_dict(item) for item in json.loads(await request.body())]
        except (ValueError, TypeError, AttributeError) as error:
            return _error(400, str(error))
        self.faults.add(rules)
        return JSONResponse({"faults": len(self.faults.rules)})

    async def admin_config(self, request: Request) -> Response:
        try:
            self.store.set_settings(json.loads(await request.body()))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            return _error(400, f"bad config: {error}")
        return JSONResponse({"ok": True})

    async def admin_state(self, request: Request) -> Response:
        rows = self.store.query("SELECT * FROM jobs ORDER BY jid")
        jobs = []
        for row in rows:
            payload = json.loads(row["payload"])
            payload.update(self.job_view(row))
            payload["submitted_at"] = row["submitted_at"]
            jobs.append(payload)
        return JSONResponse(
            {
                "jobs": jobs,
                "uploads": self.store.uploads(),
                "requests": self.store.requests(),
                "bearer_on_storage": self.store.bearer_on_storage(),
            }
        )

    async def admin_reset(self, request: Request) -> Response:
        self.faults.clear()
        self.store.reset()
        for folder in (self.files_dir, self.parts_dir):
            for path in folder.rglob("*"):
                if path.is_file():
                    path.unlink()
        return JSONResponse({"ok": True})

    async def admin_release(self, request: Request) -> Response:
        jid = request.path_params["jid"]
        if self._job_row(jid) is None:
            return _error(404, "no such job")
        self.release(int(jid))
        return JSONResponse({"ok": True})


def _frames_or_empty(spec: str) -> set[int]:
    if not spec.strip():
        return set()
    try:
        return set(parse_frame_spec(spec))
    except Exception:
        return set()


def _apply_filter(jobs: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    """The listing filters we assume (status.py): jid_gt_N, jid_lt_N, metadata.KEY=eq:VALUE."""
    if part.startswith("jid_gt_") and part[7:].isdigit():
        return [j for j in jobs if int(j["jid"]) > int(part[7:])]
    if part.startswith("jid_lt_") and part[7:].isdigit():
        return [j for j in jobs if int(j["jid"]) < int(part[7:])]
    if part.startswith("metadata.") and "=eq:" in part:
        key, _, value = part[len("metadata.") :].partition("=eq:")
        return [j for j in jobs if str(j["metadata"].get(key)) == value]
    return jobs


class Gatekeeper:
    """Outermost middleware: logs every request, and demands a bearer token on API routes."""

    OPEN = ("/api/oauth_jwt", "/_sandbox/", "/_storage/")

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        storage = path.startswith("/_storage/")
        bearer = headers.get("authorization", "").lower().startswith("bearer ")
        if path.startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        status = {"code": 0}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start" and not status["code"]:
                status["code"] = int(message["status"])
            await send(message)

        if not path.startswith(self.OPEN):
            request = Request(scope)
            if not self.sandbox.authorised(request):
                response = _error(401, "missing or invalid bearer token")
                self.sandbox.store.log_request(method, path, 401, False)
                await response(scope, receive, send)
                return
        try:
            await self.app(scope, receive, record)
        except DroppedConnection:
            self.sandbox.store.log_request(method, path, 0, storage and bearer)
            raise
        self.sandbox.store.log_request(method, path, status["code"], storage and bearer)


def create_app(data_dir: Path, faults: list[FaultRule] | None = None) -> tuple[ASGIApp, Sandbox]:
    """The ASGI app (with fault injection and the auth gate) and its Sandbox state."""
    sandbox = Sandbox(data_dir)
    if faults:
        sandbox.faults.add(faults)
    routes = [
        Route("/api/oauth_jwt", sandbox.oauth, methods=["GET", "POST"]),
        Route("/api/v1/projects/", sandbox.projects, methods=["GET"]),
        Route("/api/v1/projects", sandbox.projects, methods=["GET"]),
        Route("/api/v1/instance-types", sandbox.instance_types, methods=["GET"]),
        Route("/api/v1/ee/packages", sandbox.packages, methods=["GET"]),
        Route("/api/v1/integrations/env-vars-configs", sandbox.extra_env, methods=["GET"]),
        Route("/api/v2/files/get_upload_urls", sandbox.get_upload_urls, methods=["POST"]),
        Route("/api/v2/files/multipart/complete", sandbox.multipart_complete, methods=["POST"]),
        Route("/_storage/{token}", sandbox.storage_put, methods=["PUT"]),
        Route("/jobs/", sandbox.submit, methods=["POST"]),
        Route("/jobs", sandbox.submit, methods=["POST"]),
        Route("/api/v1/jobs", sandbox.list_jobs, methods=["GET"]),
        Route("/api/v1/jobs/{jid}", sandbox.get_job, methods=["GET"]),
        Route("/api/v1/jobs/{jid}/tasks", sandbox.get_tasks, methods=["GET"]),
        Route("/jobs_multi", sandbox.jobs_multi, methods=["PUT"]),
        Route("/get_log_file", sandbox.task_log, methods=["GET"]),
        Route("/_sandbox/faults", sandbox.admin_faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/config", sandbox.admin_config, methods=["POST"]),
        Route("/_sandbox/state", sandbox.admin_state, methods=["GET"]),
        Route("/_sandbox/reset", sandbox.admin_reset, methods=["POST"]),
        Route("/_sandbox/release/{jid}", sandbox.admin_release, methods=["POST"]),
    ]
    app: ASGIApp = Starlette(routes=routes)
    app = FaultMiddleware(app, sandbox.faults)
    return Gatekeeper(app, sandbox), sandbox


def decode_md5(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
