"""Conductor's own client library (ciocore) speaks to the sandbox: the sandbox speaks the protocol.

ciocore runs in a subprocess (it keeps process-wide state) with CONDUCTOR_URL and
CONDUCTOR_API_KEY pointing at the sandbox and a private HOME for its token cache.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_conductor.sandbox.ciocore_env import ciocore_environment
from prefect_conductor.sandbox.fixture_catalog import fixture_records
from prefect_conductor.sandbox.handle import SandboxHandle

SCRIPT = """
import json, sys
from ciocore import api_client, conductor_submit
small, big, out = sys.argv[1], sys.argv[2], sys.argv[3]
result = {
    "projects": api_client.request_projects(),
    "instance_types": len(api_client.request_instance_types()),
    "packages": len(api_client.request_software_packages()),
    "extra_env": api_client.request_extra_environment(),
}
submit = conductor_submit.Submit({
    "instance_type": "n1-standard-8", "project": "default", "job_title": "from ciocore",
    "tasks_data": [{"command": "echo one", "frames": "1"}, {"command": "echo two", "frames": "2"}],
    "output_path": "/renders", "upload_paths": [small, big], "local_upload": True,
    "metadata": {"shot": "010"}, "scout_frames": "1", "notify": ["td@example.com"],
    "autoretry_policy": {"preempted": {"max_retries": 1}}, "preemptible": True,
})
result["submit"] = list(submit.main())
result["jobs"] = [(job["jid"], job["status"]) for job in api_client.get_jobs(1)]
result["log"] = json.loads(api_client.get_log(1, 0))
result["kill_tasks"] = api_client.kill_tasks("00001", "001")["body"]
result["kill"] = api_client.kill_jobs("00001")["body"]
result["killed"] = [job["status"] for job in api_client.get_jobs(1)]
open(out, "w").write(json.dumps(result))
"""


@pytest.mark.usefixtures("cli_subprocess")
def test_ciocore_reads_the_catalogue_uploads_submits_lists_reads_logs_and_kills(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """ciocore 9.2, unmodified, against the strict sandbox: every call it makes is accepted."""
    sandbox.config(multipart_threshold=4096, part_size=1500, task_seconds=0.2)
    small = tmp_path / "asset.txt"
    small.write_bytes(b"texture " * 100)
    big = tmp_path / "cache.bin"
    big.write_bytes(bytes(range(256)) * 20)  # 5120 bytes: four parts, the last one short
    out = tmp_path / "result.json"
    env = ciocore_environment(sandbox.url, sandbox.api_key, tmp_path / "home")
    finished = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(small), str(big), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    result = json.loads(out.read_text())
    records = fixture_records()
    assert result["projects"] == [p["name"] for p in records["projects"] if p["status"] == "active"]
    assert result["instance_types"] == len(records["instance_types"])
    unix_3dsmax = [
        p for p in records["packages"] if "3dsmax" in p["product"] and p.get("platform") == "linux"
    ]
    assert result["packages"] == len(records["packages"]) - len(unix_3dsmax) > 10
    # ciocore picks the extra environment by the token's ``account`` claim.
    (mine,) = [e for e in records["extra_environment"] if e["account_id"] == "sandbox-account"]
    assert result["extra_env"] == mine["env"]
    body, status = result["submit"]
    assert status == 201 and body["jobid"] == "00001" and body["uri"] == "/jobs/00001"
    digests = {
        base64.b64encode(hashlib.md5(f.read_bytes()).digest()).decode(): f.stat().st_size
        for f in (small, big)
    }
    assert sandbox.uploads() == digests  # one single-part and one multipart upload
    job = sandbox.jobs()[0]
    assert job["job_title"] == "from ciocore" and job["metadata"] == {"shot": "010"}
    assert {f["md5"] for f in job["upload_files"]} == set(digests)
    ((jid, status),) = result["jobs"]
    assert jid == "00001" and status in ("syncing", "pending", "running")
    log = result["log"]
    assert set(log) == {"logs", "new_num_lines", "status_description", "task_status"}
    assert log["task_status"] in ("pending", "running", "success")
    assert result["kill_tasks"] == "success" and result["kill"] == "success"
    assert result["killed"] == ["killed"]
    state = sandbox.state()
    # Nothing ciocore sent was refused, and every request is one the evidence shows.
    refused = [r for r in state["requests"] if r["status"] >= 400]
    assert refused == []
    api_calls = {(r["method"], r["path"]) for r in state["requests"]}
    assert api_calls - {("PUT", r["path"]) for r in state["requests"]} == {
        ("GET", "/api/oauth_jwt"),
        ("GET", "/api/v1/projects/"),
        ("GET", "/api/v1/instance-types"),
        ("GET", "/api/v1/ee/packages"),
        ("GET", "/api/v1/integrations/env-vars-configs"),
        ("POST", "/api/v2/files/get_upload_urls"),
        ("POST", "/api/v2/files/multipart/complete"),
        ("POST", "/jobs/"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/get_log_file"),
    }
    assert ("PUT", "/jobs_multi") in api_calls and ("PUT", "/tasks_multi") in api_calls
    listing = [r for r in state["requests"] if r["path"] == "/api/v1/jobs"]
    assert {tuple(r["terms"]) for r in listing} == {("jid_gt_", "jid_lt_")}
    puts = [r for r in state["requests"] if r["path"].startswith("/_storage/")]
    assert len(puts) == 1 + 4
    # One token exchange for the whole run: ciocore's cached token passed its domain check.
    assert [r["method"] for r in state["requests"] if r["path"] == "/api/oauth_jwt"] == ["GET"]
    # ciocore sends its Conductor token to the storage host (weakness 12); ours never does.
    assert state["bearer_on_storage"] == 1
