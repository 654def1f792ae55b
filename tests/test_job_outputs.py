"""After Submit, downloads: a job renders in the sandbox, its files come down intact and resumable,
faults end with the right files or one line, failed tasks are named with their logs, and the
frame check reads what landed.

Everything talks to the sandbox over real HTTP on loopback (``sandbox`` / ``conductor_env``)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.client import ConductorClient, UploadRequest
from prefect_conductor.conductor_cloud.api.client_errors import ServerError
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.scene import HostInfo, ImageExport, SceneExport
from prefect_conductor.conductor_cloud.transfers.downloads import DownloadError
from prefect_conductor.conductor_cloud.transfers.job_outputs import (
    JobNotFinished,
    TasksFailed,
    TaskState,
    download_job,
    fetch_outputs,
    task_states,
    wait_for_tasks,
)
from prefect_conductor.conductor_cloud.transfers.output_frames import (
    FramesMissing,
    check_job_frames,
    host_frames,
    rendered_images,
)
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.node.package import package_document
from prefect_conductor.sandbox.routes import evidence
from tests.eventually import eventually

OUTPUT_PATH = "/studio/shot010/renders"
SAVE_AS = {
    "project://scene/beauty": f"{OUTPUT_PATH}/beauty/beauty.####.exr",
    "project://scene/shadow": f"{OUTPUT_PATH}/shadow/shadow.####.exr",
}
IMAGES = " ".join(SAVE_AS)


def command(frames: str) -> str:
    """The default task command's shape for two images (docs/render-command.md)."""
    return (
        f"mkdir -p {OUTPUT_PATH}/beauty {OUTPUT_PATH}/shadow && cd /studio/shot010 && cnode"
        f" shot.cio.project -image {IMAGES} -image_frames_list {frames} {frames} -log_width 0"
    )


CHUNKS = [("1-2", "1:2"), ("3-4", "3:4"), ("5", "5")]


def scene() -> SceneExport:
    return SceneExport(
        host=HostInfo(version="5.0.10"),
        project_path="/studio/shot010/shot.project",
        render_package="/studio/shot010/shot.cio.project",
        images=[
            ImageExport(path=p, render_to_disk=True, save_as=s, first_frame=1, last_frame=5)
            for p, s in SAVE_AS.items()
        ],
    )


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def client(conductor_env: SandboxHandle, tmp_path: Path) -> Iterator[ConductorClient]:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)
    with ConductorClient(token_cache_dir=tmp_path / "tokens", policy=policy) as made:
        yield made


def package(save_as: dict[str, str]) -> bytes:
    """The render package: both images, each at its Save As in ``save_as`` (or, where that
    leaves one out, beside the package, outside the job's output folder: its frames go
    missing)."""
    images = [
        ImageExport(
            path=path,
            render_to_disk=True,
            save_as=save_as.get(path, f"/studio/shot010/{path.rpartition('/')[2]}.####.exr"),
            first_frame=1,
            last_frame=5,
        )
        for path in SAVE_AS
    ]
    document = package_document(scene().model_copy(update={"images": images}))
    return json.dumps(document).encode()


def submit(
    client: ConductorClient,
    sandbox: SandboxHandle,
    save_as: dict[str, str] = SAVE_AS,
    **extra: Any,
) -> str:
    """Post the three-task job (``extra``: more payload keys, e.g. ``scout_frames``)."""
    data = package(save_as)
    md5 = b64md5(data)
    urls = client.get_upload_urls(
        [UploadRequest("/studio/shot010/shot.cio.project", md5, len(data))], "default"
    )
    for url in urls.single_part:
        httpx.put(url.url, content=data).raise_for_status()
    payload: dict[str, Any] = {
        "instance_type": "n1-standard-8",
        "project": "default",
        "output_path": OUTPUT_PATH,
        "local_upload": True,
        "upload_files": [{"md5": md5, "destination": "/studio/shot010/shot.cio.project"}],
        "tasks_data": [{"command": command(host), "frames": spec} for spec, host in CHUNKS],
        **extra,
    }
    job = client.submit_job(payload, f"test-{len(sandbox.jobs())}")
    return job.jid


def finished(client: ConductorClient, jid: str) -> list[TaskState]:
    return wait_for_tasks(client, jid, poll_seconds=0.05, timeout_seconds=30)


def on_disk(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): b64md5(path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


EXPECTED = sorted(
    f"{image}/{image}.{frame:04d}.exr" for image in ("beauty", "shadow") for frame in range(1, 6)
)


def test_a_finished_job_downloads_intact_and_a_second_run_fetches_nothing(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    first = download_job(client, jid, tmp_path / "out")
    root = tmp_path / "out" / jid
    assert first.folder == root
    files = on_disk(root)
    assert sorted(files) == EXPECTED
    listed = {f.relative_path: f.md5 for task in first.tasks for f in task.files}
    assert files == listed  # every byte verified against Conductor's md5
    assert first.stats.bytes_fetched == first.stats.bytes_total > 0
    assert sorted(first.reported) == ["000", "001", "002"]
    assert {s.status for s in task_states(client, jid)} == {TaskStatus.DOWNLOADED}
    assert (root / "beauty" / "beauty.0003.exr").read_bytes()[:4] == b"v/1\x01"  # EXR

    again = download_job(client, jid, tmp_path / "out")
    assert again.stats.bytes_fetched == 0
    assert again.stats.files_skipped == len(EXPECTED)

    state = conductor_env.state()
    assert state["bearer_on_storage"] == 0  # signed URLs are fetched without the token
    for request in state["requests"]:
        if not request["path"].startswith("/_storage/"):
            assert evidence.conforms(
                request["method"], request["path"], request["params"], request["terms"]
            ), request


def test_pages_are_walked_to_the_last_cursor(
    client: ConductorClient, conductor_env: SandboxHandle
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    pages = list(client.download_pages(jid, page_size=1))
    assert [[t.task_id for t in page] for page in pages] == [["000"], ["001"], ["002"]]
    assert [len(p[0].files) for p in pages] == [4, 4, 2]
    only = [t.task_id for page in client.download_pages(jid, tids=["1"]) for t in page]
    assert only == ["001"]


@pytest.mark.parametrize("action", ["drop_mid", "corrupt"])
def test_a_file_cut_off_or_corrupted_once_is_fetched_again(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path, action: str
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    conductor_env.faults({"method": "GET", "path": "/_storage/out/*", "action": action})
    result = download_job(client, jid, tmp_path / "out", workers=1)
    assert result.stats.refetched == 1
    files = on_disk(tmp_path / "out" / jid)
    assert files == {f.relative_path: f.md5 for t in result.tasks for f in t.files}


def test_a_file_always_corrupted_ends_in_one_line_and_no_file_under_its_name(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    conductor_env.faults(
        {"method": "GET", "path": "/_storage/out/*", "action": "corrupt", "times": 0}
    )
    with pytest.raises(DownloadError) as raised:
        download_job(client, jid, tmp_path / "out", workers=1)
    message = str(raised.value)
    assert "\n" not in message and "md5" in message and str(tmp_path / "out" / jid) in message
    assert "signature" not in message  # never the signed URL
    assert on_disk(tmp_path / "out") == {}  # no half file, no .part left behind
    conductor_env.clear_faults()
    assert download_job(client, jid, tmp_path / "out").stats.files_done == len(EXPECTED)


def test_a_5xx_on_a_downloads_page_is_retried_then_named(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    page = f"/jobs/{jid}/downloads"
    conductor_env.faults({"method": "POST", "path": page, "status": 503, "retry_after": 0})
    assert download_job(client, jid, tmp_path / "out").stats.files_done == len(EXPECTED)
    conductor_env.faults({"method": "POST", "path": page, "status": 500, "times": 0})
    with pytest.raises(ServerError) as raised:
        download_job(client, jid, tmp_path / "out")
    assert "\n" not in str(raised.value) and "HTTP 500" in str(raised.value)


def test_failed_tasks_are_named_with_frames_and_log_tails_after_the_rest_downloads(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    conductor_env.config(fail_frames=[3])
    jid = submit(client, conductor_env)
    with pytest.raises(TasksFailed) as raised:
        fetch_outputs(client, jid, tmp_path / "out", wait_seconds=30, poll_seconds=0.05)
    error = raised.value
    assert str(error) == f"job {jid}: 1 of 3 tasks did not render: 001 failed (frames 3-4)"
    assert error.log_lines()[-2:] == [
        "task 001: cnode: project://scene/beauty frame 3: the render failed",
        "task 001: sandbox: exit code 1",
    ]
    # The tasks that rendered came down first: a rerun after a retry fetches only the rest.
    assert sorted(on_disk(tmp_path / "out" / jid)) == [
        p for p in EXPECTED if not any(f".000{n}." in p for n in (3, 4))
    ]


def test_an_unfinished_job_says_so_without_waiting(
    client: ConductorClient, conductor_env: SandboxHandle
) -> None:
    conductor_env.config(task_seconds=60)
    jid = submit(client, conductor_env)
    with pytest.raises(JobNotFinished, match=f"job {jid}: 3 of 3 tasks not finished"):
        wait_for_tasks(client, jid)


def test_a_job_without_tasks_is_waited_for_then_named_in_one_line(
    client: ConductorClient, conductor_env: SandboxHandle
) -> None:
    """An empty task listing means "not yet" while time is left (Conductor may list a posted
    job's tasks a moment later) and "check the job id" once it is up; looking once says so at
    once. The same loop serves the scout wait, the follow and the download command."""
    naps: list[float] = []
    with pytest.raises(UserError, match=r"^job 99999: Conductor lists no tasks for it"):
        wait_for_tasks(client, "99999", timeout_seconds=0)
    with pytest.raises(UserError, match=r"^job 99999: Conductor lists no tasks for it"):
        wait_for_tasks(client, "99999", poll_seconds=0.01, timeout_seconds=0.2, sleep=naps.append)
    assert naps, "an empty listing is waited out while time is left"

    jid = submit(client, conductor_env)

    class LateListing:
        """The sandbox, except that the first look lists no tasks for the new job."""

        looks = 0

        def get_tasks(self, job: str) -> list[dict[str, Any]]:
            self.looks += 1
            return [] if self.looks == 1 else client.get_tasks(job)

    late = LateListing()
    states = wait_for_tasks(
        cast(Any, late), jid, poll_seconds=0.05, timeout_seconds=30, sleep=time.sleep
    )
    assert late.looks >= 2 and len(states) == 3 and all(s.status.finished for s in states)


def test_the_frame_check_reads_the_downloaded_outputs(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    beauty_only = {"project://scene/beauty": SAVE_AS["project://scene/beauty"]}
    jid = submit(client, conductor_env, save_as=beauty_only)  # the renderer "forgets" shadow
    with pytest.raises(FramesMissing) as raised:
        fetch_outputs(
            client, jid, tmp_path / "out", scene=scene(), wait_seconds=30, poll_seconds=0.05
        )
    assert raised.value.problems == ["shadow: missing 1-5 of 1-5"]
    (tmp_path / "out" / jid / "beauty" / "beauty.0002.exr").write_bytes(b"")
    states = task_states(client, jid)
    checks = check_job_frames(scene(), states, OUTPUT_PATH, tmp_path / "out" / jid)
    assert [line for c in checks for line in c.problems] == [
        "beauty: empty 2 of 1-5",
        "shadow: missing 1-5 of 1-5",
    ]
    only = check_job_frames(
        scene(), states, OUTPUT_PATH, tmp_path / "out" / jid, images=["project://scene/shadow"]
    )
    assert [c.name for c in only] == ["shadow"]


def test_rendered_images_reads_the_command_and_the_host_dialect() -> None:
    assert host_frames("1:9%4;22:23") == (1, 5, 9, 22, 23)
    assert host_frames("-3:-1") == (-3, -2, -1)
    line = "cnode '/p/a b.project' -image project://s/a project://s/b -image_frames_list -2:0 7"
    assert rendered_images(line) == [("project://s/a", (-2, -1, 0)), ("project://s/b", (7,))]
    assert rendered_images("render --custom") == []
    with pytest.raises(ValueError):
        host_frames("1:x")


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.usefixtures("cli_subprocess")
def test_the_status_and_download_commands(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    import json
    import os

    env = {
        **os.environ,
        "CONDUCTOR_URL": conductor_env.url,
        "CONDUCTOR_API_KEY": conductor_env.api_key,
    }
    conductor_env.config(fail_frames=[5])
    jid = submit(client, conductor_env)
    finished(client, jid)
    shown = run_cli("status", jid, env=env)
    assert shown.returncode == 4, shown.stderr
    assert "001" in shown.stdout and "frames" in shown.stdout and "failed" in shown.stdout
    assert shown.stderr.splitlines()[0] == (
        f"error: job {jid}: 1 of 3 tasks did not render: 002 failed (frames 5)"
    )

    scene_file = tmp_path / "scene_export.json"
    scene_file.write_text(json.dumps(scene().model_dump()))
    out = tmp_path / "out"
    failed = run_cli("download", jid, "--output", str(out), "--scene", str(scene_file), env=env)
    assert failed.returncode == 4
    lines = failed.stderr.strip().splitlines()
    assert f"error: job {jid}: 1 of 3 tasks did not render: 002 failed (frames 5)" in lines
    assert "  task 002: cnode: project://scene/beauty frame 5: the render failed" in lines
    assert "Traceback" not in failed.stderr

    conductor_env.config(fail_frames=[])
    jid = submit(
        client, conductor_env, save_as={"project://scene/beauty": SAVE_AS["project://scene/beauty"]}
    )
    finished(client, jid)
    missing = run_cli("download", jid, "--output", str(out), "--scene", str(scene_file), env=env)
    assert missing.returncode == 4
    assert "error: shadow: missing 1-5 of 1-5" in missing.stderr.splitlines()
    only = run_cli(
        "download",
        jid,
        "--output",
        str(out),
        "--scene",
        str(scene_file),
        "--images",
        "project://scene/beauty",
        env=env,
    )
    assert only.returncode == 0, only.stderr
    assert "0 files, 0 bytes fetched; 5 already on disk" in only.stdout
    assert "beauty: 5 frames ok" in only.stdout

    bad = run_cli("download", "12x", env=env)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: JID: '12x' is not a Conductor job id (digits, e.g. 00042)"
    )


CIOCORE_DOWNLOAD = """
import sys, logging
logging.disable(logging.CRITICAL)
from ciocore.downloader.logging_download_runner import LoggingDownloadRunner
LoggingDownloadRunner(
    jobids=[sys.argv[1]], output_path=sys.argv[2], num_threads=2, disable_reporting=False
).run()
"""


@pytest.mark.usefixtures("cli_subprocess")
def test_ciocores_own_downloader_fetches_the_same_files_from_the_strict_sandbox(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    """ciocore 9.2's JobDownloader, unmodified: every request it sends is accepted, every file
    lands where ours puts it with Conductor's md5, and its reports mark the tasks downloaded."""
    import os

    jid = submit(client, conductor_env)
    finished(client, jid)
    env = {
        **os.environ,
        "CONDUCTOR_URL": conductor_env.url,
        "CONDUCTOR_API_KEY": conductor_env.api_key,
        "HOME": str(tmp_path / "home"),
        "CIO_DISABLE_VERSION_CHECK": "1",
    }
    ran = subprocess.run(
        [sys.executable, "-c", CIOCORE_DOWNLOAD, jid, str(tmp_path / "cio")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    listed = {
        f.relative_path: f.md5 for page in client.download_pages(jid) for t in page for f in t.files
    }
    assert on_disk(tmp_path / "cio" / jid) == listed
    assert {s.status for s in task_states(client, jid)} == {TaskStatus.DOWNLOADED}
    refused = [r for r in conductor_env.state()["requests"] if r["status"] >= 400]
    assert refused == []


def test_the_download_faults_in_the_cli_grammar() -> None:
    from prefect_conductor.sandbox.faults import parse_fault_spec

    rules = parse_fault_spec("GET /_storage/out/*=drop_midx0;GET /_storage/out/*=corrupt")
    assert [(r.action, r.remaining) for r in rules] == [("drop_mid", None), ("corrupt", 1)]


@pytest.mark.usefixtures("cli_subprocess")
def test_ctrl_c_stops_a_download_and_the_same_command_resumes_it(
    client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    import os
    import signal

    jid = submit(client, conductor_env)
    finished(client, jid)
    conductor_env.faults(
        {"method": "GET", "path": "/_storage/out/*", "action": "delay", "seconds": 0.3, "times": 0}
    )
    env = {
        **os.environ,
        "CONDUCTOR_URL": conductor_env.url,
        "CONDUCTOR_API_KEY": conductor_env.api_key,
    }
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"]
    args = ["download", jid, "--output", str(out), "--workers", "1"]
    process = subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    eventually(
        lambda: len(list(out.rglob("*.exr"))) >= 3 or process.poll() is not None,
        what="three files downloaded",
        timeout=60,
    )
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "stopped: run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / jid).rglob("*.exr")}
    assert 3 <= len(before) < len(EXPECTED)

    conductor_env.clear_faults()
    again = run_cli(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} already on disk" in again.stdout
    assert sorted(on_disk(out / jid)) == EXPECTED  # no .part left behind
    for path, identity in before.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == identity  # not fetched again
