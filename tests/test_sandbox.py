"""The sandbox itself, over plain HTTP: auth, storage checks, jobs, the task clock, faults,
reset and restarts, loopback-only binding, and the ``sandbox`` command."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.sandbox.faults import parse_fault_spec
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.routes.tokens import Tokens
from prefect_conductor.sandbox.server import SandboxServer, require_loopback
from tests.eventually import eventually


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def token_for(url: str, api_key: str) -> str:
    key = json.loads(api_key)
    response = httpx.get(
        f"{url}/api/oauth_jwt",
        params={
            "grant_type": "client_credentials",
            "scope": "owner admin user",
            "client_id": key["client_id"],
            "client_secret": key["private_key"],
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def signed_in(url: str, api_key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token_for(url, api_key)}"},
        timeout=10,
    )


@pytest.fixture
def http(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    with signed_in(sandbox.url, sandbox.api_key) as client:
        yield client


def job_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "instance_type": "n1-standard-8",
        "project": "default",
        "tasks_data": [
            {"command": "echo rendering 1-2", "frames": "1-2"},
            {"command": "echo rendering 3-4", "frames": "3-4"},
        ],
        "output_path": "/out",
    }
    body.update(changes)
    return body


def upload_urls(http: httpx.Client, data: bytes, path: str = "/scene/a.tx") -> httpx.Response:
    return http.post(
        "/api/v2/files/get_upload_urls",
        json={
            "upload_files": [{"path": path, "hash": b64md5(data), "size": len(data)}],
            "project": "default",
        },
    )


def tasks_of(http: httpx.Client, jid: str) -> list[dict[str, Any]]:
    answer = http.get("/api/v1/tasks", params={"filter": f"jobLabel_eq_{jid}"})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def task_statuses(http: httpx.Client, jid: str) -> list[str]:
    return [t["status"] for t in tasks_of(http, jid)]


def job_of(http: httpx.Client, jid: str) -> dict[str, Any]:
    (job,) = http.get("/api/v1/jobs", params={"filter": f"jid_eq_{jid}"}).json()["data"]
    return dict(job)


def statuses_of(sandbox: SandboxHandle, path: str) -> list[int]:
    return [r["status"] for r in sandbox.state()["requests"] if r["path"] == path]


# auth --------------------------------------------------------------------------------------------


def test_api_requires_an_unexpired_token_it_issued(sandbox: SandboxHandle, tmp_path: Path) -> None:
    for path in ("/api/v1/projects/", "/api/v1/jobs", "/api/v1/tasks"):
        assert httpx.get(f"{sandbox.url}{path}").status_code == 401
    assert httpx.post(f"{sandbox.url}/api/v2/files/get_upload_urls", json={}).status_code == 401
    forged = httpx.get(f"{sandbox.url}/api/v1/projects/", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    with signed_in(sandbox.url, sandbox.api_key) as http:
        assert http.get("/api/v1/projects/").status_code == 200
        assert http.post("/jobs/", json=job_body()).status_code == 201
    unauthenticated = httpx.post(f"{sandbox.url}/jobs/", json=job_body())
    assert unauthenticated.status_code == 401 and len(sandbox.jobs()) == 1
    with SandboxServer(tmp_path / "other") as other:
        expired = Tokens(other.context).issue(other.url, seconds=-1)
        answer = httpx.get(
            f"{other.url}/api/v1/projects/", headers={"Authorization": f"Bearer {expired}"}
        )
        assert answer.status_code == 401
        # A token from another sandbox (another secret, another store) is refused too.
        stranger = token_for(other.url, other.api_key)
    refused = httpx.get(
        f"{sandbox.url}/api/v1/projects/", headers={"Authorization": f"Bearer {stranger}"}
    )
    assert refused.status_code == 401


def test_token_exchange_and_the_claims_ciocore_reads(sandbox: SandboxHandle) -> None:
    key = json.loads(sandbox.api_key)
    fields = {
        "grant_type": "client_credentials",
        "scope": "owner admin user",
        "client_id": key["client_id"],
        "client_secret": key["private_key"],
    }
    url = f"{sandbox.url}/api/oauth_jwt"
    response = httpx.get(url, params=fields)
    answer = response.json()
    assert (response.status_code, answer["expires_in"], answer["token_type"]) == (
        200,
        3600,
        "Bearer",
    )
    header, body, _ = answer["access_token"].split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    # ciocore's creds_same_domain compares what follows the last "/" of aud and of its URL.
    assert claims["aud"].rsplit("/", 1)[-1] == sandbox.url.rsplit("/", 1)[-1]
    assert claims["account"] == "sandbox-account"
    assert 3590 < claims["exp"] - time.time() <= 3600
    wrong = dict(fields, client_secret="not-the-key")
    assert httpx.get(url, params=wrong).status_code == 401
    # Only ciocore's form: no POST, no other grant, no parameter it does not send.
    assert httpx.post(url, data=fields).status_code == 404
    assert httpx.get(url, params=dict(fields, grant_type="password")).status_code == 400
    extra = httpx.get(url, params=dict(fields, redirect_uri="http://localhost:8085/"))
    assert extra.status_code == 400 and "'redirect_uri'" in extra.json()["message"]
    missing = {k: v for k, v in fields.items() if k != "client_secret"}
    assert httpx.get(url, params=missing).status_code == 400
    # The request log keeps parameter names only: the secret in the query is never stored.
    logged = json.dumps(sandbox.state()["requests"])
    assert key["private_key"] not in logged and "client_secret" in logged


def test_catalogue_endpoints(http: httpx.Client) -> None:
    from prefect_conductor.sandbox.fixture_catalog import fixture_records

    records = fixture_records()
    assert http.get("/api/v1/projects/").json() == {"data": records["projects"]}
    types = http.get("/api/v1/instance-types", params={"filter": ""}).json()
    assert types == {"data": records["instance_types"]}
    big = http.get("/api/v1/instance-types", params={"filter": "cores=gte:8:int"}).json()["data"]
    assert big == [t for t in records["instance_types"] if t["cores"] >= 8] and len(big) > 0
    linux = http.get("/api/v1/instance-types", params={"filter": "operating_system=ne:windows"})
    assert all(t["operating_system"] != "windows" for t in linux.json()["data"])
    assert http.get("/api/v1/ee/packages?all=true,").json() == {"data": records["packages"]}
    assert (
        http.get("/api/v1/projects", params={"filter": "account_id_eq_sandbox-account"}).json()[
            "data"
        ]
        == records["projects"]
    )
    extra = http.get("/api/v1/integrations/env-vars-configs").json()
    assert extra == {"data": records["extra_environment"]}
    assert http.get("/api/v1/accounts/sandbox-account").json()["data"]["id"] == "sandbox-account"


# storage -----------------------------------------------------------------------------------------


def test_single_part_upload_is_checked_then_stored_by_md5(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    data = b"texture bytes"
    answer = upload_urls(http, data).json()
    assert answer["multiPartURLs"] == []
    (grant,) = answer["singlePartURLs"]
    assert (grant["filePath"], grant["fileSize"]) == ("/scene/a.tx", len(data))
    url = grant["preSignedURL"]
    assert url.startswith(f"{sandbox.url}/_storage/") and "signature=" in url
    mismatch = httpx.put(url, content=b"other bytes!!", headers={"Content-MD5": b64md5(data)})
    assert mismatch.status_code == 400 and "Content-MD5" in mismatch.json()["message"]
    wrong_body = httpx.put(url, content=b"other bytes!!")  # no Content-MD5: the grant's md5
    assert wrong_body.status_code == 400
    assert httpx.put(url.replace("signature=", "signature=0"), content=data).status_code == 403
    later = url.replace("expires=", "expires=9")  # a longer life breaks the signature
    assert httpx.put(later, content=data).status_code == 403
    assert sandbox.uploads() == {}
    stored = httpx.put(url, content=data, headers={"Content-MD5": b64md5(data)})
    assert stored.status_code == 200
    assert stored.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert upload_urls(http, data, "/elsewhere/b.tx").status_code == 204  # dedupe by md5
    assert sandbox.uploads() == {b64md5(data): len(data)}
    blob = sandbox.data_dir / "files" / hashlib.md5(data).hexdigest()
    assert blob.read_bytes() == data
    assert sandbox.state()["bearer_on_storage"] == 0


def test_a_bearer_token_sent_to_storage_is_accepted_and_counted(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    data = b"counted"
    url = upload_urls(http, data).json()["singlePartURLs"][0]["preSignedURL"]
    assert http.put(url, content=data).status_code == 200  # http carries the bearer
    assert sandbox.state()["bearer_on_storage"] == 1
    assert sandbox.uploads() == {b64md5(data): len(data)}


def test_no_request_can_write_outside_the_data_folder(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    data = b"payload"
    url = upload_urls(http, data, "/../../../../tmp/evil").json()["singlePartURLs"][0][
        "preSignedURL"
    ]
    for bad in ("/_storage/..%2F..%2Fevil", "/_storage/%2E%2E", "/_storage/../../evil"):
        answer = httpx.put(f"{sandbox.url}{bad}?expires=9999999999", content=data)
        assert answer.status_code in (401, 403, 404)
    complete = http.post(
        "/api/v2/files/multipart/complete",
        json={"uploadID": "../../../evil", "hash": b64md5(data), "completedParts": []},
    )
    assert complete.status_code == 404
    assert (
        http.post(
            "/api/v2/files/get_upload_urls",
            json={"upload_files": [{"path": "/a", "hash": "../../etc/passwd", "size": 1}]},
        )
        .json()["message"]
        .endswith("is not a base64 md5")
    )
    assert httpx.put(url, content=data).status_code == 200
    written = sorted(
        str(p.relative_to(sandbox.data_dir)) for p in sandbox.data_dir.rglob("*") if p.is_file()
    )
    blob = f"files/{hashlib.md5(data).hexdigest()}"
    assert blob in written
    assert all(
        name in ("api_key.json", "server_secret", blob, "bin/cnode")
        or name.startswith(("sandbox.sqlite", "logs/"))
        for name in written
    )
    assert not Path("/tmp/evil").exists()


def test_multipart_upload(sandbox: SandboxHandle, http: httpx.Client) -> None:
    sandbox.config(multipart_threshold=10, part_size=8)
    data = bytes(range(20))
    answer = upload_urls(http, data, "/big.bin").json()
    assert answer["singlePartURLs"] == []
    (upload,) = answer["multiPartURLs"]
    assert (upload["partSize"], upload["fileSize"], upload["md5"]) == (8, 20, b64md5(data))
    assert [p["partNumber"] for p in upload["parts"]] == [1, 2, 3]
    etags = []
    for part in upload["parts"]:
        start = (part["partNumber"] - 1) * 8
        response = httpx.put(part["url"], content=data[start : start + 8])
        assert response.status_code == 200
        etags.append(
            {"partNumber": part["partNumber"], "etag": response.headers["etag"].strip('"')}
        )

    def complete(parts: list[dict[str, Any]], md5: str = b64md5(data)) -> httpx.Response:
        return http.post(
            "/api/v2/files/multipart/complete",
            json={"uploadID": upload["uploadID"], "hash": md5, "completedParts": parts},
        )

    assert complete(etags[:2]).status_code == 400  # a part missing
    assert complete(etags, md5=b64md5(b"something else")).status_code == 400
    lying = [*etags[:2], {"partNumber": 3, "etag": "0" * 32}]
    assert "ETag of part 3" in complete(lying).json()["message"]
    assert sandbox.uploads() == {}
    assert complete(etags).status_code == 200
    assert complete(etags).status_code == 200  # a retried completion is fine
    assert sandbox.uploads() == {b64md5(data): 20}
    assert (sandbox.data_dir / "files" / hashlib.md5(data).hexdigest()).read_bytes() == data


def test_multipart_parts_that_do_not_add_up_are_refused(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(multipart_threshold=4, part_size=4)
    data = b"12345678"
    upload = upload_urls(http, data).json()["multiPartURLs"][0]
    parts = []
    for part in upload["parts"]:
        response = httpx.put(part["url"], content=b"XXXX")  # the wrong bytes, honestly tagged
        parts.append({"partNumber": part["partNumber"], "etag": response.headers["etag"]})
    answer = http.post(
        "/api/v2/files/multipart/complete",
        json={"uploadID": upload["uploadID"], "hash": b64md5(data), "completedParts": parts},
    )
    assert answer.status_code == 400 and "does not match its md5" in answer.json()["message"]
    assert sandbox.uploads() == {}


# jobs --------------------------------------------------------------------------------------------


def test_submit_answers_like_conductor_and_keeps_the_payload(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    first = http.post("/jobs/", json=job_body(job_title="one", metadata={"shot": "010"}))
    second = http.post("/jobs/", json=job_body())
    assert first.status_code == 201
    assert first.json() == {
        "body": "job submitted.",
        "jobid": "00001",
        "status": "success",
        "uri": "/jobs/00001",
    }
    assert second.json()["jobid"] == "00002"
    stored = sandbox.jobs()[0]
    assert stored["job_title"] == "one" and stored["metadata"] == {"shot": "010"}
    assert stored["jid"] == "00001" and stored["submitted_at"] > 0
    assert stored["tasks_data"] == job_body()["tasks_data"]
    tasks = tasks_of(http, "00001")
    assert [(t["jobLabel"], t["taskLabel"], t["frames"], t["command"]) for t in tasks] == [
        ("00001", "000", "1-2", "echo rendering 1-2"),
        ("00001", "001", "3-4", "echo rendering 3-4"),
    ]
    one = http.get("/api/v1/tasks", params={"filter": "jobLabel_eq_00001,taskLabel_eq_001"})
    assert [t["command"] for t in one.json()["data"]] == ["echo rendering 3-4"]
    assert http.get("/api/v1/tasks", params={"filter": "jobLabel_eq_00009"}).json()["data"] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_type": None}, "instance_type: Field required"),
        ({"project": "nope"}, "unknown or inactive project 'nope'"),
        ({"project": "old-show"}, "unknown or inactive project 'old-show'"),
        ({"tasks_data": [{"command": "a", "frames": "1-x"}]}, "tasks_data.0.frames"),
        ({"tasks_data": [{"command": "a", "frames": " "}]}, "tasks_data.0.frames: no frames"),
        ({"tasks_data": [{"frames": "1"}]}, "tasks_data.0.command: Field required"),
        ({"scout_frames": "a-b"}, "scout_frames"),
        ({"submission_id": "x"}, "submission_id: Extra inputs are not permitted"),
        ({"metadata": {"shot": 10}}, "metadata.shot: Input should be a valid string"),
        ({"priority": "5"}, "priority: Input should be a valid integer"),
        ({"priority": 2**80}, "priority: Input should be less than or equal to"),
        ({"notify": ["a@b.c"]}, "notify: Input should be"),
        ({"autoretry_policy": {"hung": {"max_retries": 1}}}, "autoretry_policy.hung: Extra"),
        ({"upload_files": [{"destination": "/a", "md5": None, "sha": 1}]}, "upload_files.0.sha"),
        (
            {"upload_files": [{"md5": b64md5(b"never sent"), "destination": "/scene/a.tx"}]},
            "upload_files: /scene/a.tx was never uploaded",
        ),
    ],
)
def test_submit_refuses_what_conductor_would(
    sandbox: SandboxHandle, http: httpx.Client, changes: dict[str, Any], message: str
) -> None:
    body = job_body(**changes)
    body = {k: v for k, v in body.items() if v is not None}
    response = http.post("/jobs/", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert sandbox.jobs() == []


def test_upload_files_are_not_checked_when_a_daemon_uploads_later(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    files = [{"md5": None, "destination": "/scene/a.tx"}]
    answer = http.post("/jobs/", json=job_body(local_upload=False, upload_files=files))
    assert answer.status_code == 201


PACKAGE = json.dumps(
    {
        "format": "ix-standin-project/1",
        "items": [
            {
                "context": "project://scene",
                "name": "beauty",
                "class": "Image",
                "attributes": {"save_as": {"values": ["/out/beauty/beauty.####.png"]}},
            }
        ],
    }
).encode()


def cnode_job(http: httpx.Client, **changes: object) -> dict[str, object]:
    """A job whose tasks run the stand-in renderer on an uploaded two-frame-per-task package."""
    url = upload_urls(http, PACKAGE, "/proj/shot.project").json()["singlePartURLs"][0]
    assert httpx.put(url["preSignedURL"], content=PACKAGE).status_code == 200
    command = (
        "sleep 0.5; mkdir -p /out/beauty && cd /proj"
        " && cnode shot.project -image project://scene/beauty -image_frames_list {}"
    )
    return job_body(
        tasks_data=[
            {"command": command.format("1:2"), "frames": "1-2"},
            {"command": command.format("3:4"), "frames": "3-4"},
        ],
        upload_files=[{"md5": b64md5(PACKAGE), "destination": "/proj/shot.project"}],
        **changes,
    )


def test_tasks_run_their_command_on_bounded_nodes_with_failing_frames_and_logs(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(task_seconds=1.0, fail_frames=[4], instances=1)
    jid = http.post("/jobs/", json=cnode_job(http)).json()["jobid"]
    # Conductor's job passes through a sync phase before its tasks are pending.
    assert job_of(http, jid)["status"] == "syncing"
    assert task_statuses(http, jid) == ["pending", "pending"]
    eventually(lambda: job_of(http, jid)["status"] == "pending", what="the job pending")
    # one stand-in node: the tasks run one after the other
    eventually(
        lambda: task_statuses(http, jid) == ["running", "pending"],
        what="the first task running, the second waiting for the node",
    )
    assert job_of(http, jid)["status"] == "running"
    eventually(
        lambda: job_of(http, jid)["status"] == "failed",
        what="the job failed",
    )
    assert task_statuses(http, jid) == ["success", "failed"]
    log = http.get("/get_log_file", params={"job": jid, "task": "001", "num_lines[]": 0}).json()
    assert log["task_status"] == "failed" and log["status_description"] == ""
    (entry,) = log["logs"]
    assert set(entry) == {"container_id", "instance_name", "log", "timestamp"}
    assert "cnode: project://scene/beauty frame 4: the render failed" in entry["log"]
    assert entry["log"][-1] == "sandbox: exit code 1"
    assert log["new_num_lines"] == [len(entry["log"])]
    later = http.get("/get_log_file", params={"job": jid, "task": "001", "num_lines[]": 2}).json()
    assert later["logs"][0]["log"] == entry["log"][2:]
    assert http.get("/get_log_file", params={"job": jid, "task": "007"}).status_code == 404
    for bad in ({"job": "1", "task": "001"}, {"job": jid, "task": "1"}):
        assert http.get("/get_log_file", params=bad).status_code == 400
    # the successful task's frames are its outputs, below output_path
    page = http.post(f"/jobs/{jid}/downloads", params={"limit": 10}, json={"tids": None}).json()
    (task,) = page["downloads"]
    assert [f["relative_path"] for f in task["files"]] == [
        "beauty/beauty.0001.png",
        "beauty/beauty.0002.png",
    ]
    image = httpx.get(task["files"][0]["url"]).content
    assert image.startswith(b"\x89PNG")


def test_native_scout_holds_until_released_by_the_admin_api(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.config(task_seconds=0.05)
    jid = http.post("/jobs/", json=job_body(scout_frames="3")).json()["jobid"]
    eventually(
        lambda: task_statuses(http, jid) == ["holding", "success"],
        what="the scout task done",
    )
    # A job posted later renders to the end while this one still holds its other task.
    later = http.post("/jobs/", json=job_body()).json()["jobid"]
    eventually(
        lambda: task_statuses(http, later) == ["success", "success"],
        what="the later job done",
    )
    assert task_statuses(http, jid) == ["holding", "success"]
    assert job_of(http, jid)["status"] == "holding"
    sandbox.release(jid)
    eventually(
        lambda: task_statuses(http, jid) == ["success", "success"],
        what="the released job done",
    )
    with pytest.raises(httpx.HTTPStatusError):
        sandbox.release("00099")


def test_kills_jobs_and_tasks(sandbox: SandboxHandle, http: httpx.Client) -> None:
    sandbox.config(task_seconds=60)
    doomed = http.post("/jobs/", json=job_body()).json()["jobid"]
    killed = http.put("/jobs_multi", json={"action": "kill", "jobids": [doomed]})
    assert killed.json() == {"body": "success", "message": f"Jobs ['{doomed}'] have been kill."}
    assert task_statuses(http, doomed) == ["killed", "killed"]
    assert job_of(http, doomed)["status"] == "killed"
    partly = http.post("/jobs/", json=job_body()).json()["jobid"]
    one = http.put("/tasks_multi", json={"action": "kill", "jobid": partly, "taskids": ["001"]})
    assert one.status_code == 200 and one.json()["body"] == "success"
    assert task_statuses(http, partly) == ["pending", "killed"]
    # No client sends another action (no release, retry or hold through the API).
    for body in (
        {"action": "release", "jobids": [partly]},
        {"action": "kill", "jobids": [1]},
        {"action": "kill", "jobids": ["1"]},
        {"action": "kill"},
    ):
        assert http.put("/jobs_multi", json=body).status_code == 400, body
    bad = {"action": "kill", "jobid": partly, "taskids": ["1"]}
    assert http.put("/tasks_multi", json=bad).status_code == 400
    assert task_statuses(http, partly) == ["pending", "killed"]


def test_listing_filters_and_fields(sandbox: SandboxHandle, http: httpx.Client) -> None:
    for n in range(3):
        http.post("/jobs/", json=job_body(metadata={"k": f"v{n}"}, job_title=f"t{n}", owner="ann"))
    http.post("/jobs/", json=job_body())

    def jids(text: str) -> list[str]:
        return [j["jid"] for j in http.get("/api/v1/jobs", params={"filter": text}).json()["data"]]

    assert jids("") == ["00001", "00002", "00003", "00004"]
    assert jids("jid_gt_00001,jid_lt_00003") == ["00002"]
    assert jids("jid_eq_00003") == ["00003"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert jids("account_id_eq_sandbox-account,created_gt_2000-01-01,created_lt_2999-01-01") == [
        "00001",
        "00002",
        "00003",
        "00004",
    ]
    assert jids(f"created_gt_{today}") == [] and jids("account_id_eq_someone-else") == []
    job = job_of(http, "00002")
    assert {"jid", "title", "status", "created", "project"} <= set(job)
    # only fields a Conductor client shows in a listing: no metadata, as on a real account
    assert "metadata" not in job and "job_title" not in job
    assert (job["title"], job["submittedBy"]) == ("t1", "ann")
    assert (job["output_path"], job["location"], job["accountId"]) == (
        "/out",
        "",
        "sandbox-account",
    )
    fields = "title,submittedBy,jid,project,created,id,location,output_path,user"
    shown = http.get("/api/v1/jobs", params={"filter": "jid_eq_00002", "fields": fields})
    assert set(shown.json()["data"][0]) == set(fields.split(","))


@pytest.mark.parametrize(
    ("path", "params", "status", "named"),
    [
        ("/api/v1/jobs", {"filter": "metadata.k=eq:v2"}, 400, "metadata.k=eq:v2"),
        ("/api/v1/jobs", {"filter": "status_eq_running"}, 400, "status_eq_running"),
        ("/api/v1/jobs", {"filter": "jid_gt_1"}, 400, "jid_gt_1"),
        ("/api/v1/jobs", {"fields": "title,secret"}, 400, "secret"),
        ("/api/v1/jobs", {"limit": "5"}, 400, "'limit'"),
        ("/api/v1/tasks", {}, 400, "'filter'"),
        ("/api/v1/tasks", {"filter": "taskLabel_eq_000"}, 400, "jobLabel_eq_"),
        ("/api/v1/tasks", {"filter": "jid_eq_00001"}, 400, "jid_eq_00001"),
        ("/api/v1/ee/packages", {"all": "true"}, 400, "all"),
        ("/api/v1/instance-types", {"filter": "cpu>8"}, 400, "cpu>8"),
        ("/api/v1/jobs/00001", {}, 404, "/api/v1/jobs/00001"),
        ("/api/v1/jobs/00001/tasks", {}, 404, "tasks"),
        ("/api/v1/jobs/", {}, 404, "/api/v1/jobs/"),
        ("/api/v2/graphql", {}, 404, "graphql"),
    ],
)
def test_what_the_evidence_does_not_show_is_refused(
    http: httpx.Client, path: str, params: dict[str, str], status: int, named: str
) -> None:
    http.post("/jobs/", json=job_body())
    answer = http.get(path, params=params)
    assert answer.status_code == status, answer.text
    message = answer.json()["message"]
    assert named in message and "\n" not in message


def test_methods_the_evidence_does_not_show_are_refused(http: httpx.Client) -> None:
    assert http.post("/jobs", json=job_body()).status_code == 404
    assert http.delete("/jobs/").status_code == 404
    assert http.post("/jobs_multi", json={"action": "kill", "jobids": []}).status_code == 404
    assert http.get("/api/v2/files/get_upload_urls").status_code == 404


# faults ------------------------------------------------------------------------------------------


def test_drop_after_stores_the_job_then_closes_without_an_answer(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "drop_after"})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        http.post("/jobs/", json=job_body())
    assert [j["jid"] for j in sandbox.jobs()] == ["00001"]
    assert http.post("/jobs/", json=job_body()).status_code == 201  # the rule was used once
    assert statuses_of(sandbox, "/jobs/") == [0, 201]


def test_drop_before_closes_without_storing(sandbox: SandboxHandle, http: httpx.Client) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "drop_before"})
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        http.post("/jobs/", json=job_body())
    assert sandbox.jobs() == []


def test_drop_on_storage_puts(sandbox: SandboxHandle, http: httpx.Client) -> None:
    data = b"dropped once"
    url = upload_urls(http, data).json()["singlePartURLs"][0]["preSignedURL"]
    sandbox.faults({"method": "PUT", "path": "/_storage/*", "action": "drop_after"})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.put(url, content=data)
    assert sandbox.uploads() == {b64md5(data): len(data)}  # stored, though nobody was told


def test_injected_status_retry_after_and_times(sandbox: SandboxHandle, http: httpx.Client) -> None:
    sandbox.faults(
        {"method": "GET", "path": "/api/v1/projects*", "status": 429, "retry_after": 7},
        {"method": "GET", "path": "/api/v1/ee/*", "action": "status", "status": 503, "times": 2},
    )
    limited = http.get("/api/v1/projects/")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert http.get("/api/v1/projects/").status_code == 200
    answers = [http.get("/api/v1/ee/packages") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "1"
    assert statuses_of(sandbox, "/api/v1/ee/packages") == [503, 503, 200]


def test_forever_rules_until_cleared_and_the_admin_api_is_never_faulted(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    sandbox.faults({"method": "*", "path": "*", "action": "status", "status": 500, "times": 0})
    assert [http.get("/api/v1/projects/").status_code for _ in range(3)] == [500, 500, 500]
    assert sandbox.state()["jobs"] == []  # /_sandbox/ still answers
    listed = httpx.get(f"{sandbox.url}/_sandbox/faults").json()["faults"]
    assert listed[0]["hits"] == 3 and listed[0]["remaining"] is None
    sandbox.clear_faults()
    assert http.get("/api/v1/projects/").status_code == 200


def test_delay(sandbox: SandboxHandle, http: httpx.Client) -> None:
    sandbox.faults({"method": "POST", "path": "/jobs/", "action": "delay", "seconds": 0.6})
    with pytest.raises(httpx.ReadTimeout):
        http.post("/jobs/", json=job_body(), timeout=0.2)
    eventually(lambda: len(sandbox.jobs()) == 1, what="the slow request's job stored")


def test_bad_admin_input_is_refused(sandbox: SandboxHandle) -> None:
    for rule in ({"action": "explode"}, {"times": -1}, {"status": 99}, {"colour": "red"}):
        answer = httpx.post(f"{sandbox.url}/_sandbox/faults", json=[rule])
        assert answer.status_code == 400, rule
    for setting in ({"task_seconds": "soon"}, {"part_size": 0}, {"fail_frames": [1.5]}, {"x": 1}):
        answer = httpx.post(f"{sandbox.url}/_sandbox/config", json=setting)
        assert answer.status_code == 400, setting


def test_fault_spec_grammar() -> None:
    rules = parse_fault_spec(
        "POST /jobs/=drop_after;GET /api/v1/projects/=503x2;PUT *=delay:3;GET /a=429:5x0;"
        " post /b=drop_beforex3 "
    )
    assert [(r.method, r.path, r.action, r.remaining) for r in rules] == [
        ("POST", "/jobs/", "drop_after", 1),
        ("GET", "/api/v1/projects/", "status", 2),
        ("PUT", "*", "delay", 1),
        ("GET", "/a", "status", None),
        ("POST", "/b", "drop_before", 3),
    ]
    assert rules[1].status == 503 and rules[1].retry_after == 1
    assert rules[2].seconds == 3 and rules[3].retry_after == 5
    for bad in ("nonsense", "GET /a=explode", "GET /a=delayx"):
        with pytest.raises(ValueError, match="--faults"):
            parse_fault_spec(bad)


# reset, restart, binding, the command ------------------------------------------------------------


def test_reset_forgets_everything_but_the_key_and_tokens(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    data = b"forgotten"
    httpx.put(upload_urls(http, data).json()["singlePartURLs"][0]["preSignedURL"], content=data)
    http.post("/jobs/", json=job_body())
    sandbox.config(task_seconds=9, fail_frames=[1])
    sandbox.faults({"path": "/nowhere", "times": 0})
    key = sandbox.api_key
    httpx.post(f"{sandbox.url}/_sandbox/reset").raise_for_status()
    state = sandbox.state()
    assert (state["jobs"], state["uploads"], state["requests"]) == ([], {}, [])
    assert httpx.get(f"{sandbox.url}/_sandbox/faults").json()["faults"] == []
    assert list((sandbox.data_dir / "files").iterdir()) == []
    assert http.post("/jobs/", json=job_body()).json()["jobid"] == "00001"  # same token works
    sandbox.config(task_seconds=0.01)
    eventually(
        lambda: task_statuses(http, "00001") == ["success", "success"],
        what="both tasks done (fail_frames gone)",
    )
    assert sandbox.api_key == key


def test_restart_keeps_jobs_uploads_tokens_and_key(tmp_path: Path) -> None:
    data = b"kept"
    with SandboxServer(tmp_path / "data", task_seconds=0.01) as server:
        key_file = server.api_key_path
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((server.data_dir / "server_secret").stat().st_mode) == 0o600
        token = token_for(server.url, server.api_key)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers) as http:
            url = upload_urls(http, data).json()["singlePartURLs"][0]["preSignedURL"]
            assert httpx.put(url, content=data).status_code == 200
            jid = http.post(
                "/jobs/", json=job_body(upload_files=[{"md5": b64md5(data), "destination": "/a"}])
            )
            assert jid.json()["jobid"] == "00001"
        key, port = server.api_key, server.port
    with SandboxServer(tmp_path / "data", port=port) as again:
        assert again.api_key == key and json.loads(key_file.read_text()) == json.loads(key)
        handle = SandboxHandle(again.url, again.api_key, again.data_dir)
        assert [j["jid"] for j in handle.jobs()] == ["00001"]
        assert handle.uploads() == {b64md5(data): len(data)}
        handle.close()
        with httpx.Client(base_url=again.url, headers=headers) as http:
            assert upload_urls(http, data).status_code == 204
            # the restarted sandbox's stand-in nodes run the kept job's tasks to the end
            eventually(
                lambda: job_of(http, "00001")["status"] == "success", what="the kept job done"
            )
            assert http.post("/jobs/", json=job_body()).json()["jobid"] == "00002"


def test_binds_to_loopback_only(tmp_path: Path) -> None:
    assert require_loopback("localhost") == "127.0.0.1"
    assert require_loopback("127.0.0.2") == "127.0.0.2"
    assert require_loopback("::1") == "::1"
    for host in ("0.0.0.0", "10.0.0.1", "::", "192.168.1.20", "example.com", ""):
        with pytest.raises(ValueError, match="--host"):
            SandboxServer(tmp_path, host=host)
    with SandboxServer(tmp_path / "lo") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/_sandbox/state").status_code == 200


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.mark.usefixtures("cli_subprocess")
@pytest.mark.parametrize("data", [None, "relative/data"])
def test_the_sandbox_prints_a_key_path_any_folder_can_read_and_leaves_the_cwd_alone(
    tmp_path: Path, data: str | None
) -> None:
    home = tmp_path / "home"
    here = tmp_path / "checkout"
    here.mkdir()
    env = {**os.environ, "PREFECT_CONDUCTOR_HOME": str(home)}
    args = ["sandbox", "--port", "0", *(["--data", data] if data else [])]
    process = cli(*args, cwd=here, env=env)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        process.stdout.readline()
        key_line = process.stdout.readline().strip()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    key_path = Path(key_line.removeprefix("export CONDUCTOR_API_KEY_PATH="))
    assert key_path.is_absolute(), key_line
    assert key_path == (here / data if data else home / "sandbox") / "api_key.json"
    assert key_path.is_file()
    if data is None:
        assert list(here.iterdir()) == []


@pytest.mark.usefixtures("cli_subprocess")
def test_the_sandbox_command_serves_with_faults(tmp_path: Path) -> None:
    data = tmp_path / "cli-data"
    process = cli(
        "sandbox",
        "--port",
        "0",
        "--data",
        str(data),
        "--task-seconds",
        "0.01",
        "--faults",
        "GET /api/v1/projects/=503:4x2",
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        url = first.split(" on ", 1)[1].split()[0]
        assert process.stdout.readline().strip() == f"export CONDUCTOR_URL={url}"
        key_line = process.stdout.readline().strip()
        assert key_line == f"export CONDUCTOR_API_KEY_PATH={data / 'api_key.json'}"
        api_key = (data / "api_key.json").read_text()
        assert stat.S_IMODE(os.stat(data / "api_key.json").st_mode) == 0o600
        with signed_in(url, api_key) as http:
            answers = [http.get("/api/v1/projects/") for _ in range(3)]
            assert [a.status_code for a in answers] == [503, 503, 200]
            assert answers[0].headers["retry-after"] == "4"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert (data / "sandbox.sqlite").exists()


@pytest.mark.usefixtures("cli_subprocess")
def test_the_sandbox_command_refuses_other_hosts_and_bad_faults(tmp_path: Path) -> None:
    for args in (["--host", "0.0.0.0"], ["--faults", "GET /a=explode"]):
        process = cli("sandbox", "--port", "0", "--data", str(tmp_path / "d"), *args)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 2, err
        assert err.startswith("error: --") and err.count("\n") == 1 and out == ""
