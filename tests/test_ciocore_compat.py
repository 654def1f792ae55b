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

from prefect_conductor.sandbox.ciocore_env import ciocore_environment
from prefect_conductor.sandbox.fixture_catalog import fixture_records
from prefect_conductor.sandbox.handle import SandboxHandle

SCRIPT = """
import json, sys
from ciocore import api_client, conductor_submit
path, out = sys.argv[1], sys.argv[2]
result = {
    "projects": api_client.request_projects(),
    "instance_types": len(api_client.request_instance_types()),
    "packages": len(api_client.request_software_packages()),
    "extra_env": api_client.request_extra_environment(),
}
submit = conductor_submit.Submit({
    "instance_type": "n1-standard-8", "project": "default", "job_title": "from ciocore",
    "tasks_data": [{"command": "echo hi", "frames": "1"}], "output_path": "/renders",
    "upload_paths": [path], "local_upload": True,
})
result["submit"] = list(submit.main())
result["jobs"] = [job["jid"] for job in api_client.get_jobs(1)]
result["log"] = json.loads(api_client.get_log(1, 0))["task_status"]
result["kill"] = api_client.kill_jobs("00001")["body"]
result["killed"] = [job["status"] for job in api_client.get_jobs(1)]
open(out, "w").write(json.dumps(result))
"""


def test_ciocore_reads_the_catalogue_submits_with_an_upload_and_kills(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    asset = tmp_path / "asset.txt"
    asset.write_bytes(b"texture " * 1000)
    out = tmp_path / "result.json"
    env = ciocore_environment(sandbox.url, sandbox.api_key, tmp_path / "home")
    finished = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(asset), str(out)],
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
    digest = base64.b64encode(hashlib.md5(asset.read_bytes()).digest()).decode()
    assert sandbox.uploads() == {digest: asset.stat().st_size}
    job = sandbox.jobs()[0]
    assert job["job_title"] == "from ciocore"
    assert job["upload_files"][0]["md5"] == digest
    assert result["jobs"] == ["00001"] and result["log"] in ("pending", "running", "success")
    assert result["kill"] == "success" and result["killed"] == ["killed"]
    state = sandbox.state()
    # One token exchange for the whole run: ciocore's cached token passed its domain check.
    assert [r["method"] for r in state["requests"] if r["path"] == "/api/oauth_jwt"] == ["GET"]
    # ciocore sends its Conductor token to the storage host (weakness 12); ours never does.
    assert state["bearer_on_storage"] == 1
