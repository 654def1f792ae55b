"""The sandbox's ASGI app: Conductor's routes, the strict gate, the request log and faults.

It serves only what Conductor's own clients are seen to send (``evidence.py``, with sources):

* ``GET /api/oauth_jwt`` token exchange with ciocore's query (``tokens.py``);
* the catalogue from ``fixtures/catalog.json``: ``api/v1/projects/``, ``api/v1/instance-types``
  (its ``filter`` grammar applied), ``api/v1/ee/packages?all=true,``,
  ``api/v1/integrations/env-vars-configs`` and ``api/v1/accounts/<id>``, each ``{"data": ...}``;
* ``get_upload_urls`` and ``multipart/complete`` (``storage.py``); ``POST jobs/``, the job and task
  listings, ``get_log_file``, ``jobs_multi`` and ``tasks_multi`` kills (``jobs.py``);
* the downloads pages ``POST jobs/<jid>/downloads``, ``POST downloads/status`` and the signed
  output-file GETs under ``/_storage/out/`` (``downloads.py``, whose stand-in renderer writes a
  finished task's frames).

Anything else is refused before a handler runs: 404 for a method and path no client sends, 400
naming a query parameter or filter term the evidence does not show, 401 without a bearer token
(checked before a byte of the body is read), 413 for a body over ``API_BODY_LIMIT`` (by
``Content-Length``, or as soon as a chunked body passes it). Two route families are the fake's
own, not Conductor's: the admin API under ``/_sandbox/`` (``admin.py``, loopback peers only) and
the signed storage URLs under ``/_storage/`` (``storage.py``, standing for the cloud bucket; they
cap a body at the size they were signed for). Fault injection (``faults.py``) sits inside the gate.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from prefect_conductor.sandbox.admin import Admin
from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.faults import FaultMiddleware, FaultRule
from prefect_conductor.sandbox.fixture_catalog import ACCOUNT_ID
from prefect_conductor.sandbox.inflight import InFlightMiddleware
from prefect_conductor.sandbox.node.runner import TaskRunner
from prefect_conductor.sandbox.routes.downloads import Downloads
from prefect_conductor.sandbox.routes.gate import BodyTooLarge, Gatekeeper
from prefect_conductor.sandbox.routes.job_page import JobPage
from prefect_conductor.sandbox.routes.jobs import Jobs
from prefect_conductor.sandbox.routes.storage import Storage
from prefect_conductor.sandbox.routes.tokens import Tokens, error


def _keeps(record: dict[str, Any], term: str) -> bool:
    """Whether an instance type passes one ``field=op:value[:int]`` term (ciocore's grammar)."""
    name, _, rest = term.partition("=")
    op, _, value_text = rest.partition(":")
    value_text, _, kind = value_text.partition(":")
    actual: Any = record
    for part in name.split("."):
        actual = actual.get(part) if isinstance(actual, dict) else None
    value: Any = value_text
    if kind == "int":
        if not value_text.lstrip("-").isdigit() or not isinstance(actual, int | float):
            return False
        value = int(value_text)
    else:
        actual = None if actual is None else str(actual)
    if op == "eq":
        return bool(actual == value)
    if op == "ne":
        return bool(actual != value)
    return actual is not None and type(actual) is type(value) and actual >= value


class Catalogue:
    """The read-only account endpoints, served from the fixture catalogue."""

    def __init__(self, context: SandboxContext) -> None:
        self.records = context.catalog

    def _data(self, key: str) -> JSONResponse:
        return JSONResponse({"data": self.records[key]})

    async def projects(self, request: Request) -> Response:
        """Every project; ``filter=account_id_eq_<id>`` keeps them only for this account."""
        wanted = request.query_params.get("filter", "").removeprefix("account_id_eq_")
        if wanted and wanted != ACCOUNT_ID:
            return JSONResponse({"data": []})
        return self._data("projects")

    async def instance_types(self, request: Request) -> Response:
        """The instance types the ``filter`` terms (``cpu=gte:8:int``; gate-checked) keep."""
        terms = [t for t in request.query_params.get("filter", "").split(",") if t]
        kept = [r for r in self.records["instance_types"] if all(_keeps(r, t) for t in terms)]
        return JSONResponse({"data": kept})

    async def packages(self, request: Request) -> Response:
        return self._data("packages")

    async def extra_environment(self, request: Request) -> Response:
        return self._data("extra_environment")

    async def account(self, request: Request) -> Response:
        if request.path_params["account"] != ACCOUNT_ID:
            return error(404, "no such account")
        return JSONResponse({"data": {"id": ACCOUNT_ID, "name": "Conductor sandbox"}})


async def _too_large(request: Request, exc: Exception) -> Response:
    """A chunked body passed its cap while a handler read it (gate.py caps it)."""
    return error(413, "the body is over the size this route accepts")


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
    downloads = Downloads(context, jobs)
    routes = [
        Route("/api/oauth_jwt", tokens.exchange, methods=["GET"]),
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
        Route("/api/v1/jobs", jobs.list, methods=["GET"]),
        Route("/api/v1/tasks", jobs.tasks, methods=["GET"]),
        Route("/jobs_multi", jobs.jobs_multi, methods=["PUT"]),
        Route("/tasks_multi", jobs.tasks_multi, methods=["PUT"]),
        Route("/get_log_file", jobs.task_log, methods=["GET"]),
        Route("/job/{jid}", JobPage(jobs).page, methods=["GET"]),
        Route("/jobs/{jid}/downloads", downloads.listing, methods=["POST"]),
        Route("/downloads/status", downloads.report, methods=["POST"]),
        Route("/_storage/out/{name}", downloads.fetch, methods=["GET"]),
        Route("/_sandbox/faults", admin.faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/config", admin.config, methods=["POST"]),
        Route("/_sandbox/state", admin.state, methods=["GET"]),
        Route("/_sandbox/reset", admin.reset, methods=["POST"]),
        Route("/_sandbox/release/{jid}", admin.release, methods=["POST"]),
    ]
    runner = TaskRunner(context)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        """The stand-in render nodes work while the sandbox serves."""
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    app: ASGIApp = Starlette(
        routes=routes, exception_handlers={BodyTooLarge: _too_large}, lifespan=lifespan
    )
    app = FaultMiddleware(app, context.faults)
    # Outside the faults: a delayed POST counts as in flight, as on a slow Conductor.
    app = InFlightMiddleware(app, context.in_flight)
    return Gatekeeper(app, context, tokens), context
