"""Only the failed frames are rendered again: ``prefect-conductor submit --follow`` of the sample,
against a sandbox with two stand-in instances that fails frame 5 on its first attempt, ends with
every frame of both images on disk and checked, after exactly one re-render job holding only the
task of frame 5, and the first frames on disk while later tasks still render. The sample's job is
rendered a frame a task for that test (``chunk_size: 1``): with its own two frames a task, the full
job's three tasks run on the two instances side by side and end together, so no look could tell a
per-task download from a whole-job one.

The sample is copied outside the installation and its render package written by the stand-in
host, as ``test_first_real_submission`` does, so the frames come down into the copy's own output
folder; nothing is there before the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES
from tests.test_first_real_submission import CLI, host_writes_the_package

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cli_subprocess")]

IMAGES = ("beauty", "shadow")
FRAMES = range(1, 11)
LOOK_SECONDS = 0.5


@dataclass(frozen=True)
class Look:
    """What one look during the run saw: frames on disk, and jobs still rendering."""

    frames_on_disk: frozenset[tuple[str, str]]
    jobs_rendering: tuple[str, ...]


@dataclass
class FollowedRun:
    """The finished ``submit --follow``: its exit, output, every look, the sandbox's jobs."""

    returncode: int
    stdout: str
    stderr: str
    looks: list[Look]
    jobs: list[dict[str, Any]]


def sample_copy(host: Any, root: Path, chunk_size: int = 2) -> Path:
    copy = root / "shots" / "shot010"
    shutil.copytree(EXAMPLES, copy)
    shutil.rmtree(copy / "renders")
    host_writes_the_package(host, copy)
    job = copy / "job.yaml"
    text = job.read_text(encoding="utf-8")
    assert "chunk_size: 2\n" in text
    job.write_text(text.replace("chunk_size: 2\n", f"chunk_size: {chunk_size}\n"), "utf-8")
    return copy


def frames_on_disk(renders: Path) -> frozenset[tuple[str, str]]:
    return frozenset((p.parent.name, p.name) for p in renders.rglob("*.exr"))


def every_frame() -> frozenset[tuple[str, str]]:
    return frozenset((i, f"{i}.{f:04d}.exr") for i in IMAGES for f in FRAMES)


def submit_follow(
    prefect_server: str, sandbox: SandboxHandle, copy: Path, home: Path
) -> FollowedRun:
    """Run ``submit JOB --follow`` to its end, looking at the disk and the sandbox meanwhile."""
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CONDUCTOR_URL": sandbox.url,
        "CONDUCTOR_API_KEY": sandbox.api_key,
        "PREFECT_CONDUCTOR_HOME": str(home),
    }
    process = subprocess.Popen(
        [str(CLI), "submit", str(copy / "job.yaml"), "--follow", "--poll-seconds", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    looks: list[Look] = []
    try:
        while True:
            try:
                out, err = process.communicate(timeout=LOOK_SECONDS)
                break
            except subprocess.TimeoutExpired:
                looks.append(look(sandbox, copy / "renders"))
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return FollowedRun(process.returncode, out, err, looks, sandbox.jobs())


def look(sandbox: SandboxHandle, renders: Path) -> Look:
    try:
        jobs = sandbox.jobs()
    except httpx.HTTPError:
        jobs = []
    rendering = tuple(j["jid"] for j in jobs if j["status"] not in SETTLED_JOB_WORDS)
    return Look(frames_on_disk(renders), rendering)


SETTLED_JOB_WORDS = frozenset({"success", "downloaded", "failed", "killed", "preempted"})


def assert_one_rerender_of_frame_5_only(jobs: list[dict[str, Any]]) -> None:
    scout, full, *rerenders = jobs
    assert [t["frames"] for t in scout["tasks_data"]] == ["3", "8"]
    assert [t["frames"] for t in full["tasks_data"]] == ["1", "2", "4", "5", "6", "7", "9", "10"]
    assert len(rerenders) == 1
    rerender = rerenders[0]
    assert rerender["tasks_data"] == [full["tasks_data"][3]]
    assert rerender["metadata"]["prefect_conductor_rerender_of"] == full["jid"]
    assert rerender["metadata"]["prefect_conductor_rerender_attempt"] == "1"
    assert rerender["scout_frames"] == ""
    assert rerender["status"] in ("success", "downloaded")


def assert_first_frames_landed_while_the_full_job_rendered(
    looks: list[Look], full_jid: str
) -> None:
    """Some look saw a full-job frame on disk while that job was still rendering."""
    scout_frames = {f"{i}.{f:04d}.exr" for i in IMAGES for f in (3, 8)}
    early = [
        look
        for look in looks
        if full_jid in look.jobs_rendering
        and any(name not in scout_frames for _image, name in look.frames_on_disk)
    ]
    assert early, "no full-job frame was on disk before the full job finished"


def assert_every_frame_on_disk_and_real(renders: Path) -> None:
    assert frames_on_disk(renders) == every_frame()
    for path in renders.rglob("*.exr"):
        assert path.read_bytes()[:4] == b"v/1\x01"  # a real OpenEXR file


def test_submit_follow_renders_frame_5_again_and_ends_with_every_frame_on_disk(
    prefect_server: str, sandbox: SandboxHandle, host: Any, tmp_path: Path
) -> None:
    copy = sample_copy(host, tmp_path, chunk_size=1)
    sandbox.config(fail_frames=[5], fail_attempts=1, instances=2, frame_seconds=1.0)
    run = submit_follow(prefect_server, sandbox, copy, tmp_path / "home")
    assert run.returncode == 0, run.stderr[-3000:]
    assert_one_rerender_of_frame_5_only(run.jobs)
    assert_every_frame_on_disk_and_real(copy / "renders")
    assert_first_frames_landed_while_the_full_job_rendered(run.looks, run.jobs[1]["jid"])
    rerender = run.jobs[2]["jid"]
    assert f"re-render 1 job {rerender}: frames 5: rendered" in run.stdout


def test_submit_follow_ends_failed_in_one_line_when_frame_5_fails_every_attempt(
    prefect_server: str, sandbox: SandboxHandle, host: Any, tmp_path: Path
) -> None:
    copy = sample_copy(host, tmp_path)
    sandbox.config(fail_frames=[5], fail_attempts=0, instances=2)
    run = submit_follow(prefect_server, sandbox, copy, tmp_path / "home")
    assert run.returncode != 0
    _scout, full, rerender = run.jobs
    last = [line for line in run.stderr.splitlines() if line.strip()][-1]
    assert (
        f"frames 5-6 did not render in 2 attempts (jobs {full['jid']}, {rerender['jid']};" in last
    )
    assert "Traceback" not in run.stderr
