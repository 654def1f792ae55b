"""The sandbox's ASGI app: Conductor's routes, the bearer gate, the request log and faults.

It serves the paths and shapes Conductor's own client uses (research/conductor-client-facts.md
sections 1-3) plus the job/task status endpoints we assume (``status.py``):

* ``/api/oauth_jwt`` token exchange (``tokens.py``);
* the catalogue from ``fixtures/catalog.json``: ``api/v1/projects/``, ``api/v1/instance-types``
  (its ``filter`` is ignored), ``api/v1/ee/packages``, ``api/v1/integrations/env-vars-configs``
  and ``api/v1/accounts/<id>``, each ``{"data": ...}``;
* uploads and signed storage URLs (``storage.py``); jobs, tasks and logs (``jobs.py``);
* the admin API under ``/_sandbox/`` (``admin.py``) and fault injection (``faults.py``).

Every route but the token exchange, storage URLs and the admin API needs a bearer token.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_conductor.sandbox.admin import Admin
from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.faults import (
    RAW_SEND,
    DroppedConnection,
    FaultMiddleware,
    FaultRule,
)
from prefect_conductor.sandbox.fixture_catalog import ACCOUNT_ID
from prefect_conductor.sandbox.job_page import JobPage
from prefect_conductor.sandbox.jobs import Jobs
from prefect_conductor.sandbox.storage import Storage
from prefect_conductor.sandbox.tokens import Tokens, error


class Catalogue:
    """The read-only account endpoints, served from the fixture catalogue."""

    def __init__(self, context: SandboxContext) -> None:
        self.records = context.catalog

    def _data(self, key: str) -> JSONResponse:
        return JSONResponse({"data": self.records[key]})

    async def projects(self, request: Request) -> Response:
        return self._data("projects")

    async def instance_types(self, request: Request) -> Response:
        return self._data("instance_types")

    async def packages(self, request: Request) -> Response:
        return self._data("packages")

    async def extra_environment(self, request: Request) -> Response:
        return self._data("extra_environment")

    async def account(self, request: Request) -> Response:
        if request.path_params["account"] != ACCOUNT_ID:
            return error(404, "no such account")
        return JSONResponse({"data": {"id": ACCOUNT_ID, "name": "Conductor sandbox"}})


def _is_loopback(client: Any) -> bool:
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except (TypeError, IndexError, ValueError):
        return False


class Gatekeeper:
    """Outermost middleware: admin API for loopback peers only, bearer tokens on API routes,
    and one request-log row per non-admin request (status 0 when the connection was dropped)."""

    OPEN = ("/api/oauth_jwt", "/_storage/")

    def __init__(self, app: ASGIApp, context: SandboxContext, tokens: Tokens) -> None:
        self.app = app
        self.context = context
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(("/_sandbox/", "/job/")):  # admin API and job page (job_page.py)
            if not _is_loopback(scope.get("client")):
                await error(403, "the admin API answers loopback peers only")(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        scope[RAW_SEND] = send
        authorization = ""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                authorization = value.decode("latin-1")
        store = self.context.store
        if not path.startswith(self.OPEN) and not self.tokens.authorised(authorization):
            store.log_request(method, path, 401, False)
            await error(401, "missing or invalid bearer token")(scope, receive, send)
            return
        carried_bearer = path.startswith("/_storage/") and authorization.lower().startswith(
            "bearer "
        )
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start" and not status:
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        except DroppedConnection:
            store.log_request(method, path, 0, carried_bearer)
            raise
        store.log_request(method, path, status, carried_bearer)


def create_app(
    data_dir: Path,
    faults: list[FaultRule] | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[ASGIApp, SandboxContext]:
    """The ASGI app (auth gate, faults, routes) and the context it serves from ``data_dir``."""
    context = SandboxContext(data_dir, settings=settings, faults=faults)
    tokens = Tokens(context)
    catalogue = Catalogue(context)
    storage = Storage(context)
    jobs = Jobs(context)
    admin = Admin(context, jobs)
    routes = [
        Route("/api/oauth_jwt", tokens.exchange, methods=["GET", "POST"]),
        Route("/api/v1/projects/", catalogue.projects, methods=["GET"]),
        Route("/api/v1/projects", catalogue.projects, methods=["GET"]),
        Route("/api/v1/instance-types", catalogue.instance_types, methods=["GET"]),
        Route("/api/v1/ee/packages", catalogue.packages, methods=["GET"]),
        Route(
            "/api/v1/integrations/env-vars-configs", catalogue.extra_environment, methods=["GET"]
        ),
        Route("/api/v1/accounts/{account}", catalogue.account, methods=["GET"]),
        Route("/api/v2/files/get_upload_urls", storage.upload_urls, methods=["POST"]),
        Route("/api/v2/files/multipart/complete", storage.complete, methods=["POST"]),
        Route("/_storage/{grant}", storage.put, methods=["PUT"]),
        Route("/jobs/", jobs.submit, methods=["POST"]),
        Route("/jobs", jobs.submit, methods=["POST"]),
        Route("/api/v1/jobs", jobs.list, methods=["GET"]),
        Route("/api/v1/jobs/", jobs.list, methods=["GET"]),
        Route("/api/v1/jobs/{jid}", jobs.get, methods=["GET"]),
        Route("/api/v1/jobs/{jid}/tasks", jobs.tasks, methods=["GET"]),
        Route("/jobs_multi", jobs.jobs_multi, methods=["PUT"]),
        Route("/get_log_file", jobs.task_log, methods=["GET"]),
        Route("/job/{jid}", JobPage(jobs).page, methods=["GET"]),
        Route("/_sandbox/faults", admin.faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/config", admin.config, methods=["POST"]),
        Route("/_sandbox/state", admin.state, methods=["GET"]),
        Route("/_sandbox/reset", admin.reset, methods=["POST"]),
        Route("/_sandbox/release/{jid}", admin.release, methods=["POST"]),
    ]
    app: ASGIApp = Starlette(routes=routes)
    app = FaultMiddleware(app, context.faults)
    return Gatekeeper(app, context, tokens), context
