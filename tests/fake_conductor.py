"""A scriptable in-memory Conductor for httpx.MockTransport: unit tests of the client's protocol.

It answers only the forms the evidence shows (docs/protocol.md) and records every request, so a
test can assert both what the client did and what it sent. The sandbox tests cover the wire.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

CLIENT_ID = "studio-7"
PRIVATE_KEY = "-----BEGIN KEY-----\npk+very/secret=9f8e\n-----END KEY-----"
ACCOUNT = "acct-42"
URL = "https://dashboard.example.test"


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned JWT with ``claims`` (the client decodes without verifying, as ciocore does)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


@dataclass
class FakeConductor:
    """Jobs, tasks and tokens in memory; ``on_post`` / ``on_list`` let a test script faults."""

    audience: str = "https://api.example.test"
    jobs: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    page_size: int | None = None  # truncate listings (ascending jid) to this many records
    ignore_jid_bounds: bool = False
    requests: list[httpx.Request] = field(default_factory=list)
    bearers: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization) as sent
    issued: list[str] = field(default_factory=list)
    on_post: Callable[[dict[str, Any]], httpx.Response | Exception] | None = None
    on_list: Callable[[int], httpx.Response | None] | None = None
    refuse_tokens: set[str] = field(default_factory=set)
    missing_hosts: set[str] = field(default_factory=set)  # hosts with no routes: every path 404s

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def store(self, body: dict[str, Any]) -> dict[str, Any]:
        jid = f"{len(self.jobs) + 1:05d}"
        job = {
            "jid": jid,
            "status": "pending",
            "title": body.get("job_title", ""),
            "project": body.get("project", ""),
        }
        self.jobs.append(job)
        return job

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host in self.missing_hosts:
            return httpx.Response(404, json={"message": f"no route {request.method} {path}"})
        self.bearers.append((path, request.headers.get("Authorization", "")))
        if path == "/api/oauth_jwt":
            return self.exchange(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.issued or token in self.refuse_tokens:
            return httpx.Response(401, json={"message": "bad token"})
        if request.method == "GET" and path == "/api/v1/jobs":
            return self.list_jobs(request)
        if request.method == "GET" and path == "/api/v1/tasks":
            label = request.url.params["filter"].removeprefix("jobLabel_eq_")
            return httpx.Response(
                200, json={"data": [t for t in self.tasks if t["jobLabel"] == label]}
            )
        if request.method == "POST" and path == "/jobs/":
            body = json.loads(request.content)
            if self.on_post is not None:
                answer = self.on_post(body)
                if isinstance(answer, Exception):
                    raise answer
                return answer
            job = self.store(body)
            return httpx.Response(201, json={"jobid": job["jid"], "uri": f"/jobs/{job['jid']}"})
        return httpx.Response(404, json={"message": f"no route {request.method} {path}"})

    def exchange(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if request.method != "GET" or (params.get("client_id"), params.get("client_secret")) != (
            CLIENT_ID,
            PRIVATE_KEY,
        ):
            return httpx.Response(401, json={"message": "invalid client credentials"})
        token = jwt(
            {
                "aud": self.audience,
                "account": ACCOUNT,
                "exp": time.time() + 3600,
                "n": len(self.issued),
            }
        )
        self.issued.append(token)
        return httpx.Response(200, json={"access_token": token, "expires_in": 3600})

    def list_jobs(self, request: httpx.Request) -> httpx.Response:
        if self.on_list is not None:
            scripted = self.on_list(len(self.sent("GET", "/api/v1/jobs")))
            if scripted is not None:
                return scripted
        jobs = list(self.jobs)
        for part in request.url.params.get("filter", "").split(","):
            if self.ignore_jid_bounds:
                continue
            if part.startswith("jid_gt_"):
                jobs = [j for j in jobs if int(j["jid"]) > int(part[7:])]
            elif part.startswith("jid_lt_"):
                jobs = [j for j in jobs if int(j["jid"]) < int(part[7:])]
        jobs.sort(key=lambda j: j["jid"])
        if self.page_size is not None:
            jobs = jobs[: self.page_size]
        return httpx.Response(200, json={"data": jobs})
