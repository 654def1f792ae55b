"""How many ``POST jobs/`` and storage uploads the sandbox is serving at once, and the most seen.

A studio bounds these across all its workers with Prefect concurrency limits; only the
server can see whether the bound held, since the workers are separate processes on separate
machines. The counter sits outside fault injection, so a ``delay`` fault counts as time in flight,
as a slow Conductor would. ``GET /_sandbox/state`` reports it under ``in_flight``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

COUNTED = {("POST", "/jobs/"): "job_posts", ("PUT", "/_storage/*"): "uploads"}
"""(method, path) -> the counter's name; a path ending in ``*`` is a prefix."""


@dataclass
class Gauge:
    """Requests being served now and the most at once since the last reset."""

    now: int = 0
    most: int = 0


class InFlight:
    """Thread-safe gauges, one per counted kind of request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges = {name: Gauge() for name in COUNTED.values()}

    def enter(self, name: str) -> None:
        with self._lock:
            gauge = self._gauges[name]
            gauge.now += 1
            gauge.most = max(gauge.most, gauge.now)

    def leave(self, name: str) -> None:
        with self._lock:
            self._gauges[name].now -= 1

    def reset(self) -> None:
        """Forget the maxima (requests still in flight stay counted)."""
        with self._lock:
            for gauge in self._gauges.values():
                gauge.most = gauge.now

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {name: {"now": g.now, "max": g.most} for name, g in self._gauges.items()}


def counted(method: str, path: str) -> str | None:
    """The gauge a request belongs to, if any (storage download routes are not uploads)."""
    for (want_method, want_path), name in COUNTED.items():
        if method != want_method:
            continue
        if path == want_path or (want_path.endswith("*") and path.startswith(want_path[:-1])):
            return name
    return None


class InFlightMiddleware:
    """ASGI middleware that counts the requests :data:`COUNTED` names while they are served."""

    def __init__(self, app: ASGIApp, gauges: InFlight) -> None:
        self.app = app
        self.gauges = gauges

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = counted(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None:
            await self.app(scope, receive, send)
            return
        self.gauges.enter(name)
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauges.leave(name)
