"""Fault injection for the sandbox: make the network and the server misbehave on purpose.

A rule matches a method and a path (``fnmatch``) and does one thing, ``times`` times (0: always):

* ``status``: answer with that status (429 and 503 carry ``Retry-After``) and do nothing else;
* ``delay``: wait ``seconds`` before handling the request normally (past a client's read timeout);
* ``drop_before``: read the request, then close the connection without handling it;
* ``drop_after``: handle the request fully (a job *is* stored), then close the connection without
  sending a byte of the answer, so the client sees a transport error (httpx:
  ``RemoteProtocolError``) and cannot know whether it worked;
* ``drop_mid``: send the answer's headers and the first half of its body, then close the
  connection (a download cut off in the middle of a file);
* ``corrupt``: send the answer with its first body byte flipped and its length unchanged (a file
  whose bytes do not match its md5).

Rules are tried in the order they were added; the admin API (``/_sandbox/``) is never faulted.

The CLI grammar is ``METHOD PATH=ACTION[:ARG][xTIMES]`` joined by ``;``: ACTION is a status code
(ARG: Retry-After seconds), ``delay`` (ARG: seconds), ``drop_before``, ``drop_after``,
``drop_mid`` or ``corrupt``; TIMES
defaults to 1 and ``x0`` means forever. For example
``POST /jobs/=drop_after;GET /api/v1/projects/=503x2;PUT *=delay:3;GET *=429:5x0``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Action = Literal["status", "delay", "drop_before", "drop_after", "drop_mid", "corrupt"]
ACTIONS = ("status", "delay", "drop_before", "drop_after", "drop_mid", "corrupt")
RULE_FIELDS = {"method", "path", "action", "status", "retry_after", "seconds", "times"}


RAW_SEND = "prefect_conductor.sandbox.raw_send"
"""Scope key under which the outermost middleware keeps the server's own ``send``."""


class DroppedConnection(Exception):
    """Raised after a partial answer when the connection cannot be closed directly."""


@dataclass
class FaultRule:
    """One injected fault; ``remaining`` counts down (None: forever)."""

    method: str = "*"
    path: str = "*"
    action: Action = "status"
    status: int = 503
    retry_after: float | None = None
    seconds: float = 0.0
    remaining: int | None = 1
    hits: int = field(default=0)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(data) - {
            "method",
            "path",
            "action",
            "status",
            "retry_after",
            "seconds",
            "times",
        }
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
        action = data.get("action", "status")
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; use one of {', '.join(ACTIONS)}")
        times = int(data.get("times", 1))
        status = int(data.get("status", 503))
        if times < 0 or not 100 <= status <= 599 or float(data.get("seconds", 0.0)) < 0:
            raise ValueError("a fault rule needs times >= 0, seconds >= 0 and a status 100-599")
        retry_after = data.get("retry_after")
        if retry_after is None and status in (429, 503) and action == "status":
            retry_after = 1
        return cls(
            method=str(data.get("method", "*")).upper(),
            path=str(data.get("path", "*")),
            action=action,
            status=status,
            retry_after=None if retry_after is None else float(retry_after),
            seconds=float(data.get("seconds", 0.0)),
            remaining=None if times == 0 else times,
        )

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method):
            return False
        wanted = self.path if self.path.startswith(("/", "*")) else "/" + self.path
        return fnmatch.fnmatchcase(path, wanted)


SPEC_PART = re.compile(
    r"^\s*(?P<method>[A-Za-z*]+)\s+(?P<path>\S+)\s*=\s*(?P<action>\d{3}|[a-z_]+)"
    r"(?::(?P<arg>[0-9.]+))?(?:x(?P<times>\d+))?\s*$"
)


def parse_fault_spec(spec: str) -> list[FaultRule]:
    """Parse the CLI grammar; a bad part raises ValueError naming it."""
    rules = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        match = SPEC_PART.match(part)
        if match is None:
            raise ValueError(f"--faults: cannot read {part!r} (METHOD PATH=ACTION[:ARG][xTIMES])")
        action, arg = match.group("action"), match.group("arg")
        data: dict[str, Any] = {
            "method": match.group("method"),
            "path": match.group("path"),
            "times": int(match.group("times") or 1),
        }
        if action.isdigit():
            data.update(action="status", status=int(action))
            if arg:
                data["retry_after"] = float(arg)
        elif action == "delay":
            data.update(action="delay", seconds=float(arg or 1))
        elif action in ("drop_before", "drop_after", "drop_mid", "corrupt"):
            data["action"] = action
        else:
            raise ValueError(f"--faults: unknown action {action!r} in {part!r}")
        rules.append(FaultRule.from_dict(data))
    return rules


class FaultBook:
    """The active rules, shared between the admin API and the middleware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rules: list[FaultRule] = []

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self.rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def describe(self) -> list[dict[str, Any]]:
        """The rules with how often each fired and how many uses remain (None: forever)."""
        with self._lock:
            return [
                {
                    "method": r.method,
                    "path": r.path,
                    "action": r.action,
                    "status": r.status,
                    "seconds": r.seconds,
                    "remaining": r.remaining,
                    "hits": r.hits,
                }
                for r in self.rules
            ]

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first matching rule, counted as used."""
        with self._lock:
            for rule in self.rules:
                if rule.remaining == 0 or not rule.matches(method, path):
                    continue
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None


class FaultMiddleware:
    """ASGI middleware applying the FaultBook to every request except the admin API."""

    def __init__(self, app: ASGIApp, book: FaultBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox/"):
            await self.app(scope, receive, send)
            return
        rule = self.book.take(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.action == "delay":
            # Take the whole request first, as a slow server would: a client that gives up
            # during the delay does not stop the work (a timed-out POST may still make a job).
            replay = await _read_request(receive)
            await asyncio.sleep(rule.seconds)
            await self.app(scope, _replaying(replay, receive), send)
        elif rule.action == "status":
            headers = [(b"content-type", b"application/json")]
            if rule.retry_after is not None:
                headers.append((b"retry-after", str(int(rule.retry_after)).encode()))
            body = b'{"message": "injected fault"}'
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": rule.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif rule.action == "drop_before":
            # Read the body first: closing a socket with unread bytes sends a reset, and both
            # drops should look the same to a client (a clean close, no answer).
            await _drain(receive)
            await _drop(scope, send)
        elif rule.action == "drop_mid":
            await _drop_midway(self.app, scope, receive, send)
        elif rule.action == "corrupt":
            await self.app(scope, receive, _corrupting(send))
        else:
            await self.app(scope, receive, _swallow)
            await _drop(scope, send)


def _corrupting(send: Send) -> Send:
    """A ``send`` that flips the first byte of the body (same length, different md5)."""
    flipped = False

    async def wrapped(message: Message) -> None:
        nonlocal flipped
        body = message.get("body", b"")
        if message["type"] == "http.response.body" and body and not flipped:
            flipped = True
            message = {**message, "body": bytes([body[0] ^ 0xFF]) + body[1:]}
        await send(message)

    return wrapped


async def _drop_midway(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer with the headers and half the body (by ``Content-Length``), then drop."""
    state = {"length": 0, "sent": 0, "cut": False}

    async def wrapped(message: Message) -> None:
        if state["cut"]:
            return
        if message["type"] == "http.response.start":
            for name, value in message.get("headers", []):
                if name.lower() == b"content-length" and value.isdigit():
                    state["length"] = int(value)
            await send(message)
            return
        body = message.get("body", b"")
        half = max(1, state["length"] // 2)
        room = half - state["sent"]
        if len(body) >= room:
            state["cut"] = True
            await send({"type": "http.response.body", "body": body[:room], "more_body": True})
            return
        state["sent"] += len(body)
        await send(message)

    await app(scope, receive, wrapped)
    cycle = getattr(scope.get(RAW_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # type: ignore[union-attr]
        transport.close()
        return
    raise DroppedConnection("connection dropped in the middle of the answer by an injected fault")


async def _read_request(receive: Receive) -> list[Message]:
    """Every message of the request body, up to the last one."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


async def _drain(receive: Receive) -> None:
    """Read and discard the request body."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then defers to the real one."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _swallow(message: Message) -> None:
    """Discard the real answer of a request whose connection is about to be dropped."""


async def _drop(scope: Scope, send: Send) -> None:
    """Close the connection without answering.

    uvicorn's h11 protocol gives no ASGI way to do that (an exception before the answer starts
    becomes a 500), so the server's own ``send`` (kept in the scope by the outermost middleware)
    leads to its transport. Marking the request cycle disconnected first stops uvicorn from
    answering or logging. Elsewhere, fall back to a truncated answer, which a client also sees as
    a broken connection.
    """
    cycle = getattr(scope.get(RAW_SEND), "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(cycle, "disconnected"):
        cycle.disconnected = True  # type: ignore[union-attr]
        transport.close()
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"1000")],
        }
    )
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise DroppedConnection("connection dropped by an injected fault")
