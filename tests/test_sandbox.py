"""The sandbox itself, over plain HTTP: auth, storage checks, the task clock, faults, restarts."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.sandbox.faults import parse_fault_spec
from prefect_conductor.conductor_cloud.sandbox.handle import SandboxHandle
from prefect_conductor.conductor_cloud.sandbox.server import SandboxServer, require_loopback


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def signed_in(sandbox: SandboxHandle) -> httpx.Client:
    key = json.loads(sandbox.api_key)
    token = httpx.post(
        f"{sandbox.url}/api/oauth_jwt",
        data={
            "grant_type": "client_credentials",
            "client_id": key["client_id"],
            "client_secret": key["private_key"],
        },
    ).json()["access_token"]
    return httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def job_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "instance_type": "n1-standard-8",
        "project": "default",
        "tasks_data": [{"command": "a", "frames": "1-2"}, {"command": "b", "frames": "3-4"}],
        "output_path": "/out",
    }
    body.update(changes)
    return body


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


def test_api_requires_a_token_it_issued(sandbox: SandboxHandle) -> None:
    assert httpx.get(f"{sandbox.url}/api/v1/projects/").status_code == 401
    forged = httpx.get(f"{sandbox.url}/api/v1/projects/", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    with signed_in(sandbox) as http:
        assert http.get("/api/v1/projects/").status_code == 200


def test_legacy_get_token_exchange_and_jwt_claims(sandbox: SandboxHandle) -> None:
    key = json.loads(sandbox.api_key)
    response = httpx.get(
        f"{sandbox.url}/api/oauth_jwt",
        params={
            "grant_type": "client_credentials",
            "client_id": key["client_id"],
            "client_secret": key["private_key"],
        },
    )
    token = response.json()["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"].rsplit("/", 1)[-1] == sandbox.url.rsplit("/", 1)[-1]
    assert claims["account"] == "sandbox-account"
    wrong = httpx.post(
        f"{sandbox.url}/api/oauth_jwt", data={"client_id": key["client_id"], "client_secret": "no"}
    )
    assert wrong.status_code == 401


def test_uploads_are_checked_and_stored_by_md5(sandbox: SandboxHandle) -> None:
    data = b"texture bytes"
    with signed_in(sandbox) as http:
        answer = http.post(
            "/api/v2/files/get_upload_urls",
            json={
                "upload_files": [
                    {"path": "/../../etc/evil", "hash": b64md5(data), "size": len(data)}
                ],
                "project": None,
            },
        ).json()
        url = answer["singlePartURLs"][0]["preSignedURL"]
        bad = httpx.put(url, content=b"other bytes!!", headers={"Content-MD5": b64md5(data)})
        assert bad.status_code == 400
        tampered = httpx.put(url.replace("signature=", "signature=0"), content=data)
        assert tampered.status_code == 403
        assert (
            httpx.put(url, content=data, headers={"Content-MD5": b64md5(data)}).status_code == 200
        )
        again = http.post(
            "/api/v2/files/get_upload_urls",
            json={
                "upload_files": [{"path": "/x", "hash": b64md5(data), "size": len(data)}],
                "project": None,
            },
        )
        assert again.status_code == 204  # server-side dedupe
    stored = sorted(p.name for p in (sandbox.data_dir / "files").iterdir())
    assert stored == [hashlib.md5(data).hexdigest()]
    assert not (sandbox.data_dir.parent / "etc").exists()
    assert sandbox.uploads() == {b64md5(data): len(data)}


def test_multipart_upload(sandbox: SandboxHandle) -> None:
    sandbox.config(multipart_threshold=10, part_size=8)
    data = bytes(range(20))
    with signed_in(sandbox) as http:
        answer = http.post(
            "/api/v2/files/get_upload_urls",
            json={
                "upload_files": [{"path": "/big", "hash": b64md5(data), "size": 20}],
                "project": "default",
            },
        ).json()
        upload = answer["multiPartURLs"][0]
        assert [p["partNumber"] for p in upload["parts"]] == [1, 2, 3]
        etags = []
        for part in upload["parts"]:
            start = (part["partNumber"] - 1) * 8
            response = httpx.put(part["url"], content=data[start : start + 8])
            etags.append(
                {"partNumber": part["partNumber"], "etag": response.headers["etag"].strip('"')}
            )
        missing = http.post(
            "/api/v2/files/multipart/complete",
            json={
                "uploadID": upload["uploadID"],
                "hash": b64md5(data),
                "completedParts": etags[:2],
            },
        )
        assert missing.status_code == 400
        done = http.post(
            "/api/v2/files/multipart/complete",
            json={"uploadID": upload["uploadID"], "hash": b64md5(data), "completedParts": etags},
        )
        assert done.status_code == 200
    assert sandbox.uploads()[b64md5(data)] == 20


def test_job_needs_its_files_uploaded(sandbox: SandboxHandle) -> None:
    with signed_in(sandbox) as http:
        response = http.post(
            "/jobs/", json=job_body(upload_files=[{"md5": b64md5(b"x"), "destination": "/a.tx"}])
        )
    assert response.status_code == 400 and "/a.tx" in response.json()["message"]
    with signed_in(sandbox) as http:
        missing = http.post("/jobs/", json={"project": "default"})
    assert "instance_type" in missing.json()["message"]


def test_task_clock_and_failing_frames(sandbox: SandboxHandle) -> None:
    sandbox.config(task_seconds=0.1, fail_frames=[4])
    with signed_in(sandbox) as http:
        jid = http.post("/jobs/", json=job_body()).json()["jobid"]
        first = [t["status"] for t in http.get(f"/api/v1/jobs/{jid}/tasks").json()["data"]]
        assert first == ["pending", "pending"]
        wait_for(lambda: http.get(f"/api/v1/jobs/{jid}").json()["data"]["status"] == "failed")
        final = [t["status"] for t in http.get(f"/api/v1/jobs/{jid}/tasks").json()["data"]]
    assert final == ["success", "failed"]


def test_native_scout_holds_until_released(sandbox: SandboxHandle) -> None:
    sandbox.config(task_seconds=0.05)
    with signed_in(sandbox) as http:
        jid = http.post("/jobs/", json=job_body(scout_frames="3")).json()["jobid"]

        def statuses() -> list[str]:
            return [t["status"] for t in http.get(f"/api/v1/jobs/{jid}/tasks").json()["data"]]

        wait_for(lambda: statuses() == ["holding", "success"])
        assert http.get(f"/api/v1/jobs/{jid}").json()["data"]["status"] == "holding"
        sandbox.release(jid)
        wait_for(lambda: statuses() == ["success", "success"])


def test_listing_filters(sandbox: SandboxHandle) -> None:
    with signed_in(sandbox) as http:
        for n in range(3):
            http.post("/jobs/", json=job_body(metadata={"k": f"v{n}"}))
        by_range = http.get("/api/v1/jobs", params={"filter": "jid_gt_00001,jid_lt_00003"}).json()[
            "data"
        ]
        by_meta = http.get("/api/v1/jobs", params={"filter": "metadata.k=eq:v2"}).json()["data"]
    assert [j["jid"] for j in by_range] == ["00002"]
    assert [j["jid"] for j in by_meta] == ["00003"]


def test_drop_after_stores_then_breaks_the_connection(sandbox: SandboxHandle) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "drop_after"})
    with signed_in(sandbox) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/jobs/", json=job_body())
    assert len(sandbox.jobs()) == 1


def test_injected_status_and_delay(sandbox: SandboxHandle) -> None:
    sandbox.faults(
        {
            "method": "GET",
            "path": "/api/v1/projects*",
            "action": "status",
            "status": 429,
            "retry_after": 7,
        },
        {"method": "GET", "path": "/api/v1/ee/packages", "action": "delay", "seconds": 0.5},
    )
    with signed_in(sandbox) as http:
        limited = http.get("/api/v1/projects/")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
        assert http.get("/api/v1/projects/").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            http.get("/api/v1/ee/packages", timeout=0.2)


def test_fault_spec_grammar() -> None:
    rules = parse_fault_spec(
        "POST /jobs/=drop_after;GET /api/v1/projects/=503x2;PUT *=delay:3;GET /a=429:5"
    )
    assert [(r.method, r.action, r.remaining) for r in rules] == [
        ("POST", "drop_after", 1),
        ("GET", "status", 2),
        ("PUT", "delay", 1),
        ("GET", "status", 1),
    ]
    assert rules[2].seconds == 3 and rules[3].retry_after == 5
    with pytest.raises(ValueError, match="--faults: cannot read"):
        parse_fault_spec("nonsense")


def test_binds_to_loopback_only(tmp_path: Path) -> None:
    assert require_loopback("localhost") == "127.0.0.1"
    assert require_loopback("127.0.0.2") == "127.0.0.2"
    for host in ("0.0.0.0", "10.0.0.1", "::", "example.com"):
        with pytest.raises(ValueError):
            SandboxServer(tmp_path, host=host)


def test_restart_keeps_jobs_uploads_and_key(tmp_path: Path) -> None:
    with SandboxServer(tmp_path / "data") as server:
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        with signed_in(handle) as http:
            jid = http.post("/jobs/", json=job_body()).json()["jobid"]
        key = server.api_key
        handle.close()
    with SandboxServer(tmp_path / "data") as again:
        assert again.api_key == key
        handle = SandboxHandle(again.url, again.api_key, again.data_dir)
        assert [j["jid"] for j in handle.jobs()] == [jid]
        handle.close()
