"""The sandbox's outermost middleware: strictness, bearer tokens, body caps and the request log.

Order matters and is cheap first: the route (404) and the token (401) are checked before the
query (400) and before a byte of the body is read, so an unauthenticated client cannot make the
sandbox hold a large body. A body is capped at ``API_BODY_LIMIT`` by its ``Content-Length`` and,
for a chunked body, while it arrives (413 either way). The signed storage route caps its own
bodies (at the size it signed for) and the admin API answers loopback peers only.

Every non-admin request leaves one log row: method, path, status (0: the connection was
dropped), the query's parameter *names* and the filter terms' *kinds* (``jid_gt_``), never a
value, because the token exchange carries the API key's secret in its query.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.faults import RAW_SEND
from prefect_conductor.sandbox.routes import evidence
from prefect_conductor.sandbox.routes.tokens import Tokens, error

API_BODY_LIMIT = 16 * 1024 * 1024
"""Largest JSON body accepted: a job with tens of thousands of upload entries fits."""
ADMIN_BODY_LIMIT = 1024 * 1024
STORAGE_PREFIX = "/_storage/"
ADMIN_PREFIX = "/_sandbox/"
JOB_PAGE_PREFIX = "/job/"
"""The dashboard-like job page (job_page.py): a browser on loopback reads it without a token."""


class BodyTooLarge(Exception):
    """A chunked body passed its cap while it was being read."""


def _is_loopback(client: Any) -> bool:
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except (TypeError, IndexError, ValueError):
        return False


LOOPBACK_HOST = re.compile(r"(localhost|127(\.[0-9]{1,3}){3}|\[::1\])(:[0-9]{1,5})?", re.IGNORECASE)


def _loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine (a page using DNS rebinding names another)."""
    return bool(host) and LOOPBACK_HOST.fullmatch(host or "") is not None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name.lower() == wanted:
            return str(value.decode("latin-1"))
    return None


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` as a number; -1 when it is not one."""
    text = _header(scope, b"content-length")
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 19 else -1


def capped(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that raises BodyTooLarge once more than ``limit`` body bytes arrived."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


async def _answer(send: Send, status: int, message: str, scope: Scope, receive: Receive) -> None:
    await error(status, message)(scope, receive, send)


class Gatekeeper:
    """Strict routes, bearer tokens and body caps in front of the app; one log row per request."""

    def __init__(self, app: ASGIApp, context: SandboxContext, tokens: Tokens) -> None:
        self.app = app
        self.context = context
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not _loopback_host(_header(scope, b"host")):
            refusal = "the sandbox answers requests addressed to a loopback host name only"
            await _answer(send, 403, refusal, scope, receive)
            return
        if path.startswith((ADMIN_PREFIX, JOB_PAGE_PREFIX)):
            if not _is_loopback(scope.get("client")):
                refusal = "the admin API and job pages answer loopback peers only"
                await _answer(send, 403, refusal, scope, receive)
                return
            await self._capped(scope, receive, send, ADMIN_BODY_LIMIT)
            return
        scope[RAW_SEND] = send
        method: str = scope["method"]
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = parse_qsl(raw_query, keep_blank_values=True)
        names = sorted({name[:64] for name, _ in query})
        outcome: list[Any] = [0, []]
        try:
            await self._serve(scope, receive, send, method, path, query, outcome)
        finally:
            carried_bearer = path.startswith(STORAGE_PREFIX) and (
                _header(scope, b"authorization") or ""
            ).lower().startswith("bearer ")
            status, terms = outcome
            self.context.store.log_request(method, path, status, carried_bearer, names, terms)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        outcome: list[Any],
    ) -> None:
        """Refuse or serve; ``outcome`` gets the status sent (0: dropped) and the term kinds."""

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start" and not outcome[0]:
                outcome[0] = int(message["status"])
            await send(message)

        if path.startswith(STORAGE_PREFIX):
            await self._capped(scope, receive, record, None)
            return
        if evidence.find(method, path) is None:
            unknown = f"{method} {path[:200]} is not a Conductor endpoint"
            await _answer(record, 404, unknown, scope, receive)
            return
        exchange = path == "/api/oauth_jwt"
        if not exchange and not self.tokens.authorised(_header(scope, b"authorization") or ""):
            await _answer(record, 401, "missing or invalid bearer token", scope, receive)
            return
        try:
            shape = evidence.check(method, path, query)
        except evidence.Refusal as refusal:
            await _answer(record, refusal.status, refusal.message, scope, receive)
            return
        outcome[1] = list(shape.terms)
        await self._capped(scope, receive, record, API_BODY_LIMIT)

    async def _capped(self, scope: Scope, receive: Receive, send: Send, limit: int | None) -> None:
        """Run the app with the body capped at ``limit`` (None: the route caps it itself)."""
        if limit is not None:
            length = declared_length(scope)
            if length == -1:
                await _answer(send, 400, "Content-Length is not a number", scope, receive)
                return
            if length is not None and length > limit:
                await _answer(send, 413, f"the body is over {limit} bytes", scope, receive)
                return
            receive = capped(receive, limit)
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BodyTooLarge:
            if started:
                raise
            await _answer(send, 413, f"the body is over {limit} bytes", scope, receive)
