"""The sandbox fails cleanly: malformed requests get a one-line 400 (never a 500), credentials are
checked before a body is read, bodies are capped, and its command says one line for bad setup."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.routes.gate import API_BODY_LIMIT
from prefect_conductor.sandbox.server import SandboxServer
from tests.test_sandbox import b64md5, cli, job_body, signed_in, upload_urls

MIB = 1024 * 1024
HUGE = "9" * 5000


@pytest.fixture
def http(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    with signed_in(sandbox.url, sandbox.api_key) as client:
        yield client


def no_server_errors(sandbox: SandboxHandle) -> None:
    assert [r for r in sandbox.state()["requests"] if r["status"] >= 500] == []


def one_line(response: httpx.Response, status: int, named: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    assert named in message and "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/jobs/", b"not json", "the body is not JSON"),
        ("/jobs/", b"[" * 100_000, "nests too deeply"),
        ("/jobs/", b'"a string"', "the body"),
        ("/jobs/", json.dumps(job_body(priority=1)).replace("1}", "1e400}").encode(), "1e400"),
        ("/jobs/", f'{{"priority": {HUGE}}}'.encode(), "digits"),
        ("/jobs/", json.dumps(job_body(priority=10**30)).encode(), "priority"),
        ("/jobs/", json.dumps(job_body(priority=True)).encode(), "priority"),
        ("/jobs/", json.dumps(job_body(tasks_data="1-10")).encode(), "tasks_data"),
        (
            "/jobs/",
            json.dumps(job_body(tasks_data=[{"command": "a", "frames": HUGE}])).encode(),
            "tasks_data.0.frames",
        ),
        (
            "/jobs/",
            json.dumps(
                job_body(tasks_data=[{"command": "a", "frames": f"1-{HUGE[:40]}"}])
            ).encode(),
            "tasks_data.0.frames",
        ),
        ("/jobs/", json.dumps(job_body(scout_frames=HUGE[:200])).encode(), "scout_frames"),
        ("/jobs/", json.dumps(job_body(upload_files={"a": 1})).encode(), "upload_files"),
        (
            "/api/v2/files/get_upload_urls",
            b'{"upload_files": [{"path": "a", "hash": "x", "size": 1e400}]}',
            "1e400",
        ),
        (
            "/api/v2/files/get_upload_urls",
            json.dumps({"upload_files": [{"path": "a", "hash": "x", "size": -1}]}).encode(),
            "upload_files.0.size",
        ),
        (
            "/api/v2/files/get_upload_urls",
            json.dumps({"upload_files": [{"path": "a", "hash": "x", "size": "1"}]}).encode(),
            "upload_files.0.size",
        ),
        ("/api/v2/files/get_upload_urls", b"{}", "upload_files: Field required"),
        (
            "/api/v2/files/get_upload_urls",
            json.dumps(
                {"upload_files": [{"path": "a", "hash": b64md5(b"a"), "size": 2**53}]}
            ).encode(),
            "needs over 10000 parts",
        ),
        (
            "/api/v2/files/multipart/complete",
            json.dumps({"uploadID": "u", "completedParts": [{"partNumber": 10**40}]}).encode(),
            "completedParts.0.partNumber",
        ),
        (
            "/api/v2/files/multipart/complete",
            json.dumps({"uploadID": 7, "completedParts": []}).encode(),
            "uploadID",
        ),
    ],
)
def test_malformed_bodies_are_a_one_line_400(
    sandbox: SandboxHandle, http: httpx.Client, path: str, body: bytes, named: str
) -> None:
    one_line(http.post(path, content=body), 400, named)
    assert sandbox.jobs() == []
    no_server_errors(sandbox)


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/jobs_multi", b"{", "the body is not JSON"),
        ("/jobs_multi", json.dumps({"action": "kill", "jobids": "00001"}).encode(), "jobids"),
        ("/jobs_multi", json.dumps({"action": "kill", "jobids": [HUGE]}).encode(), "jobids"),
        (
            "/tasks_multi",
            json.dumps({"action": "kill", "jobid": 1, "taskids": []}).encode(),
            "jobid",
        ),
        (
            "/tasks_multi",
            json.dumps({"action": "kill", "jobid": "00001", "taskids": [HUGE]}).encode(),
            "taskids",
        ),
    ],
)
def test_malformed_kills_are_a_one_line_400(
    sandbox: SandboxHandle, http: httpx.Client, path: str, body: bytes, named: str
) -> None:
    one_line(http.put(path, content=body), 400, named)
    no_server_errors(sandbox)


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/get_log_file", {"job": HUGE, "task": "000"}, "job"),
        ("/get_log_file", {"job": "00001", "task": "000", "num_lines[]": "1e400"}, "num_lines[]"),
        ("/get_log_file", {"job": "00001", "task": "000", "num_lines[]": HUGE}, "num_lines[]"),
        ("/get_log_file", {"job": "00001"}, "'task'"),
        ("/api/v1/jobs", {"filter": f"jid_gt_{HUGE}"}, "filter"),
        ("/api/v1/jobs", {"filter": "created_gt_1e400"}, "filter"),
        ("/api/v1/tasks", {"filter": f"jobLabel_eq_{HUGE}"}, "filter"),
    ],
)
def test_malformed_parameters_are_a_one_line_400(
    sandbox: SandboxHandle, http: httpx.Client, path: str, params: dict[str, str], named: str
) -> None:
    http.post("/jobs/", json=job_body())
    one_line(http.get(path, params=params), 400, named)
    no_server_errors(sandbox)


def declaring(url: str, request_line: str, length: int, *headers: str) -> int:
    """Send a request that declares ``length`` body bytes but sends only a few; its status."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as peer:
        head = [request_line, f"Host: {host}", f"Content-Length: {length}", *headers, "", ""]
        peer.sendall("\r\n".join(head).encode() + b"{}")
        return int(peer.recv(1024).split(b" ", 2)[1])


def test_credentials_are_checked_before_a_body_is_read(sandbox: SandboxHandle) -> None:
    """An unauthenticated client declaring a huge body is refused at once, unread."""
    huge = 400 * MIB
    assert declaring(sandbox.url, "POST /jobs/ HTTP/1.1", huge) == 401
    assert declaring(sandbox.url, "POST /api/v2/files/get_upload_urls HTTP/1.1", huge) == 401
    # The token exchange has no POST form any more: nothing to read a body for.
    assert declaring(sandbox.url, "POST /api/oauth_jwt HTTP/1.1", huge) == 404
    # A GET to it declaring a body over the cap is refused by its Content-Length.
    query = "grant_type=client_credentials&client_id=a&client_secret=b"
    assert declaring(sandbox.url, f"GET /api/oauth_jwt?{query} HTTP/1.1", huge) == 413
    no_server_errors(sandbox)


def test_bodies_over_the_cap_are_refused_declared_or_chunked(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    bearer = str(http.headers["authorization"])
    over = API_BODY_LIMIT + 1
    assert declaring(sandbox.url, "POST /jobs/ HTTP/1.1", over, f"Authorization: {bearer}") == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(API_BODY_LIMIT // MIB + 8):
            yield b" " * MIB

    one_line(http.post("/jobs/", content=chunks()), 413, "over")
    assert sandbox.jobs() == []
    assert list((sandbox.data_dir / "incoming").iterdir()) == []
    no_server_errors(sandbox)


def test_storage_takes_no_more_than_the_size_it_signed_for(
    sandbox: SandboxHandle, http: httpx.Client
) -> None:
    data = b"signed for exactly this"
    url = upload_urls(http, data).json()["singlePartURLs"][0]["preSignedURL"]
    signed = url.removeprefix(sandbox.url)
    assert declaring(sandbox.url, f"PUT {signed} HTTP/1.1", len(data) + 1) == 413

    def chunks() -> Iterator[bytes]:
        yield data
        for _ in range(64):
            yield b"x" * MIB

    one_line(httpx.put(url, content=chunks()), 413, "signed for")
    assert sandbox.uploads() == {}
    assert list((sandbox.data_dir / "incoming").iterdir()) == []
    assert httpx.put(url, content=data).status_code == 200
    assert sandbox.uploads() == {b64md5(data): len(data)}
    bad_signature = url.replace("signature=", "signature=0")
    forged = bad_signature.removeprefix(sandbox.url)
    assert declaring(sandbox.url, f"PUT {forged} HTTP/1.1", 400 * MIB) == 403


# the sandbox command -----------------------------------------------------------------------------


def refused_setup(tmp_path: Path, data: Path, *extra: str) -> str:
    process = cli("sandbox", "--port", "0", "--data", str(data), *extra)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.usefixtures("cli_subprocess")
def test_the_command_says_one_line_for_a_data_folder_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("I am a file")
    assert refused_setup(tmp_path, data).startswith(f"error: --data: {data} is a file")


@pytest.mark.usefixtures("cli_subprocess")
def test_the_command_says_one_line_for_a_corrupt_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "sandbox.sqlite").write_bytes(b"this is not a database " * 100)
    err = refused_setup(tmp_path, data)
    assert err.startswith(f"error: --data: {data / 'sandbox.sqlite'} is not a sandbox database")


@pytest.mark.usefixtures("cli_subprocess")
def test_the_command_says_one_line_for_an_api_key_that_is_a_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "api_key.json").mkdir(parents=True)
    err = refused_setup(tmp_path, data)
    assert err.startswith(f"error: --data: cannot read {data / 'api_key.json'}")


@pytest.mark.usefixtures("cli_subprocess")
def test_the_command_says_one_line_for_a_port_out_of_range(tmp_path: Path) -> None:
    err = refused_setup(tmp_path, tmp_path / "data", "--port", "70000")
    assert err.startswith("error: --port: 70000 is not a port number")


def test_bad_setup_is_a_user_error_in_process_too(tmp_path: Path) -> None:
    (tmp_path / "key" / "api_key.json").mkdir(parents=True)
    with pytest.raises(UserError, match="api_key.json"):
        SandboxServer(tmp_path / "key")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "api_key.json").write_text('{"client_id": 1}')
    with pytest.raises(UserError, match="is not an API key"):
        SandboxServer(tmp_path / "garbled")
    with pytest.raises(ValueError, match="--port"):
        SandboxServer(tmp_path / "ok", port=-1)
    # A database an older sandbox made gains the newer columns instead of failing.
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "sandbox.sqlite") as db:
        db.execute(
            "CREATE TABLE tasks (jid INTEGER NOT NULL, tid INTEGER NOT NULL, frames TEXT NOT NULL,"
            " command TEXT NOT NULL, started_at REAL, will_fail INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (jid, tid))"
        )
    with SandboxServer(old) as server, signed_in(server.url, server.api_key) as http:
        assert http.post("/jobs/", json=job_body()).status_code == 201
