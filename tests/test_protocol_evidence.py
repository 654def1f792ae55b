"""Our client sends only what Conductor's own clients are seen to send.

The strict sandbox refuses any method, path, query parameter, filter term or body key that
``prefect_conductor.sandbox.routes.evidence`` (the allowlist, with its sources) does not show.
Here our client goes through its public calls against it: a catalogue refresh, single and multipart
uploads, a submission with its duplicate lookup, reading jobs and tasks, and a kill. No request
may be refused for strictness, and every logged request (method, path, parameter names, filter
term kinds) must be one the allowlist holds. A call that fails is reported by name, so the test
says which client calls still use forms the evidence does not show.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.refresh import refresh_catalog
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.submission.payload import UploadEntry
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.uploads import upload_files
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.routes import evidence
from prefect_conductor.sandbox.routes.bodies import JobPayload

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.1, deadline=10)


def job_payload(uploads: list[UploadEntry]) -> dict[str, Any]:
    return {
        "instance_type": "n1-standard-8",
        "project": "default",
        "tasks_data": [
            {"command": "render 1 2", "frames": "1-2"},
            {"command": "render 3 4", "frames": "3-4"},
        ],
        "output_path": "/renders",
        "job_title": "evidence",
        "metadata": {"shot": "010"},
        "upload_files": [entry.as_payload() for entry in uploads],
        "upload_size": sum(entry.size for entry in uploads),
    }


def test_our_client_sends_only_evidenced_requests(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.config(multipart_threshold=100_000, part_size=64 * 1024, task_seconds=0.05)
    assets = tmp_path / "assets"
    assets.mkdir()
    small, big = assets / "small.tx", assets / "big.abc"
    small.write_bytes(os.urandom(3000))
    big.write_bytes(os.urandom(300_000))
    failed: list[str] = []
    client = ConductorClient(
        sandbox.url,
        ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tokens",
        policy=FAST,
    )

    def attempt(name: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as problem:  # the report below names every call that failed
            failed.append(f"{name}: {type(problem).__name__}: {str(problem)[:160]}")
            return None

    with client:
        attempt("refresh_catalog", lambda: refresh_catalog(client, tmp_path / "catalog.json"))
        uploaded = attempt(
            "upload_files",
            lambda: upload_files(
                client,
                [small, big],
                project="default",
                cache=Md5Cache(tmp_path / "md5.sqlite"),
                storage_policy=FAST,
            ),
        )
        entries = [UploadEntry(f.path, f.md5, f.stat) for f in (uploaded.files if uploaded else [])]
        job = attempt("submit_job", lambda: client.submit_job(job_payload(entries), "run-1:full"))
        attempt("submit_job again", lambda: client.submit_job(job_payload(entries), "run-1:full"))
        jid = job.jid if job is not None else "00001"
        attempt("find_job", lambda: client.find_job("run-1:full"))
        attempt("list_jobs", lambda: client.list_jobs(1, 1))
        attempt("get_job", lambda: client.get_job(jid))
        attempt("get_tasks", lambda: client.get_tasks(jid))
        attempt("kill_jobs", lambda: client.kill_jobs([jid]))
    requests = sandbox.state()["requests"]
    refused = [
        f"{r['method']} {r['path']} -> {r['status']} (params {r['params']}, terms {r['terms']})"
        for r in requests
        if r["status"] in (400, 404, 405, 413)
    ]
    unevidenced = [
        f"{r['method']} {r['path']} (params {r['params']}, terms {r['terms']})"
        for r in requests
        if not r["path"].startswith("/_storage/")
        and not evidence.conforms(r["method"], r["path"], r["params"], r["terms"])
    ]
    report = "\n".join(
        [
            "client calls that failed:",
            *failed,
            "requests refused:",
            *refused,
            "requests the evidence does not show:",
            *unevidenced,
        ]
    )
    assert (failed, refused, unevidenced) == ([], [], []), report
    # The calls did reach the sandbox: uploads stored, one job, killed.
    assert len(sandbox.uploads()) == 2
    assert [j["status"] for j in sandbox.jobs()] == ["killed"]


def test_the_allowlist_cites_a_source_for_every_endpoint() -> None:
    for endpoint in evidence.ENDPOINTS:
        assert endpoint.source and endpoint.method in ("GET", "POST", "PUT")
        assert endpoint.required <= endpoint.params
    assert evidence.conforms("GET", "/api/v1/jobs", ["filter"], ["jid_gt_", "jid_lt_"])
    assert not evidence.conforms("GET", "/api/v1/jobs", ["filter"], ["metadata"])
    assert not evidence.conforms("GET", "/api/v1/jobs/00001", [], [])
    assert not evidence.conforms("POST", "/api/oauth_jwt", [], [])
    assert evidence.conforms("GET", "/api/v1/accounts/sandbox-account", [], [])
    # The typed job body takes exactly ciocore's payload keys.
    assert set(JobPayload.model_fields) == evidence.JOB_KEYS
