"""Promises under stress: faults everywhere, a killed run finished later, and no secret leaks."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.settings import get_current_settings

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.flows.render_submit import render_submit
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.usefixtures("prefect_backend")

SCENE = SceneSource(export_path=str(EXAMPLES / "scene_export.json"))


def example_job(**changes: Any) -> Any:
    from prefect_conductor.conductor_cloud.job.loaders import load_job

    return load_job(EXAMPLES / "job.yaml").model_copy(update=changes)


def assert_uploads_verified(sandbox: SandboxHandle) -> None:
    """Every file every job names is stored, and its bytes hash to the md5 it claims."""
    stored = sandbox.uploads()
    for job in sandbox.jobs():
        for entry in job["upload_files"]:
            assert entry["md5"] in stored
            blob = sandbox.data_dir / "files" / base64.b64decode(entry["md5"]).hex()
            assert (
                base64.b64encode(hashlib.md5(blob.read_bytes()).digest()).decode() == entry["md5"]
            )


def test_faults_everywhere_still_make_one_scout_and_one_full_job(
    conductor_env: SandboxHandle,
) -> None:
    conductor_env.faults(
        {
            "method": "GET",
            "path": "/api/v1/projects/",
            "action": "status",
            "status": 503,
            "retry_after": 0,
            "times": 2,
        },
        {
            "method": "POST",
            "path": "/api/v2/files/get_upload_urls",
            "action": "status",
            "status": 429,
            "retry_after": 1,
        },
        {"method": "PUT", "path": "/_storage/*", "action": "drop_before", "times": 2},
        {
            "method": "PUT",
            "path": "/_storage/*",
            "action": "status",
            "status": 500,
            "retry_after": 0,
            "times": 2,
        },
        {"method": "POST", "path": "/jobs/", "action": "drop_after", "times": 2},
        {
            "method": "GET",
            "path": "/api/v1/tasks",
            "action": "status",
            "status": 502,
            "retry_after": 0,
        },
    )
    result = render_submit(job=example_job(), scene=SCENE, options=RunOptions(poll_seconds=0.05))
    jobs = conductor_env.jobs()
    assert [len(j["tasks_data"]) for j in jobs] == [2, 3]
    assert {s: j["jid"] for s, j in zip(("scout", "full"), jobs, strict=True)} == {
        step: info["jid"] for step, info in result["jobs"].items()
    }
    assert_uploads_verified(conductor_env)


RUN_SCRIPT = """
import sys
from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource
from prefect_conductor.flows.render_submit import render_submit
render_submit(job=load_job(sys.argv[1]), scene=SceneSource(export_path=sys.argv[2]),
              options=RunOptions(poll_seconds=0.1, submission_key=sys.argv[3]))
"""


def test_a_run_killed_midway_is_finished_by_the_next_without_duplicates(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    conductor_env.config(task_seconds=30)  # the scouts stay busy while the run is killed
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),  # its own local backend, like another worker
        "PREFECT_CONDUCTOR_HOME": str(tmp_path / "conductor"),
        # ... sharing result storage with this one, as workers on several machines must
        # (docs/protocol.md): the record of what was posted lives there
        "PREFECT_LOCAL_STORAGE_PATH": str(get_current_settings().results.local_storage_path),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RUN_SCRIPT,
            str(EXAMPLES / "job.yaml"),
            str(EXAMPLES / "scene_export.json"),
            "click-7",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killing it takes its Prefect server too
    )

    def scout_posted() -> list[dict[str, Any]]:
        assert process.poll() is None, "the run ended before it was killed"
        return conductor_env.jobs()

    try:
        eventually(scout_posted, what="the scout job", timeout=120, interval=0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the worker machine dies, server and all
        process.wait()
    puts_before = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    conductor_env.config(task_seconds=0.05)
    render_submit(
        job=example_job(),
        scene=SCENE,
        options=RunOptions(poll_seconds=0.05, submission_key="click-7"),
    )
    jobs = conductor_env.jobs()
    assert [len(j["tasks_data"]) for j in jobs] == [2, 3]
    puts_after = [
        r for r in conductor_env.state()["requests"] if r["path"].startswith("/_storage/")
    ]
    assert puts_after == puts_before  # nothing uploaded again
    assert_uploads_verified(conductor_env)


def test_no_secret_in_parameters_logs_artifacts_or_output(
    conductor_env: SandboxHandle,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = json.loads(conductor_env.api_key)["private_key"]
    state = render_submit(
        job=example_job(), scene=SCENE, options=RunOptions(poll_seconds=0.05), return_state=True
    )
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    tokens_dir = Path(os.environ["PREFECT_CONDUCTOR_HOME"]) / "tokens"
    tokens = [json.loads(p.read_text())["access_token"] for p in tokens_dir.glob("*.json")]
    assert tokens, "the run signed in, so a token exists to look for"
    with get_client(sync_client=True) as client:

        def logs_and_artifacts() -> tuple[list[Any], list[Any]] | None:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            return (logs, artifacts) if logs and artifacts else None

        # Logs reach the API in batches, a little after the run.
        logs, artifacts = eventually(logs_and_artifacts, what="the run's logs and artifacts")
        run = client.read_flow_run(run_id)
    haystacks = {
        "parameters": json.dumps(run.parameters, default=str),
        "logs": "\n".join(log.message for log in logs),
        "artifacts": "\n".join(json.dumps(a.data, default=str) for a in artifacts),
        "output": "".join(capsys.readouterr()),
        "log records": caplog.text,
    }
    for where, text in haystacks.items():
        assert secret not in text, where
        for token in tokens:
            assert token not in text, where


def test_sandbox_restarted_in_the_middle_of_an_upload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from prefect_conductor.conductor_cloud.api.auth import ApiKey
    from prefect_conductor.conductor_cloud.api.client import ConductorClient
    from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
    from prefect_conductor.conductor_cloud.api.retry import logger as retry_logger
    from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
    from prefect_conductor.conductor_cloud.transfers.uploads import upload_files
    from prefect_conductor.processes import free_port
    from prefect_conductor.sandbox.server import SandboxServer

    port = free_port()
    data = tmp_path / "sandbox"
    first = SandboxServer(data, port=port).start()
    handle = SandboxHandle(first.url, first.api_key, first.data_dir)
    handle.faults(
        {"method": "PUT", "path": "/_storage/*", "action": "delay", "seconds": 0.2, "times": 0}
    )
    files = []
    for n in range(24):
        path = tmp_path / "assets" / f"a{n:03d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(5000 + n))
        files.append(path)
    policy = RetryPolicy(attempts=40, base_delay=0.05, max_delay=0.5, deadline=60)
    client = ConductorClient(
        first.url, ApiKey.from_text(first.api_key), token_cache_dir=tmp_path / "t", policy=policy
    )
    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            outcome["result"] = upload_files(
                client,
                files,
                project="default",
                cache=Md5Cache(tmp_path / "c.sqlite"),
                workers=2,
                storage_policy=policy,
            )
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    caplog.set_level(logging.INFO, logger=retry_logger.name)
    thread = threading.Thread(target=upload)
    thread.start()
    eventually(handle.uploads, what="a first upload stored")
    first.stop()
    # The server is back only once an upload has met it gone and is being retried.
    eventually(
        lambda: any(r.getMessage().startswith("retrying PUT") for r in caplog.records),
        what="an upload retried after the server stopped",
    )
    second = SandboxServer(data, port=port).start()
    try:
        thread.join(timeout=90)
        assert "error" not in outcome, outcome.get("error")
        stored = SandboxHandle(second.url, second.api_key, second.data_dir).uploads()
        expected = {base64.b64encode(hashlib.md5(p.read_bytes()).digest()).decode() for p in files}
        assert expected <= set(stored)
    finally:
        client.close()
        handle.close()
        second.stop()
