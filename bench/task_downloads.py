"""Frames as each task finishes: the time from a task's success to its frames on disk.

A job of 20 tasks (2 frames of 2 images each) renders on 2 stand-in instances, each frame taking
``--frame-seconds``, so tasks finish one after another over the job's life. Two identical jobs:

1. **followed**: ``fetch_outputs`` with ``poll_seconds`` (the loop the CLI's ``download --follow``
   and the run's follow step use) downloads each task as a look at the task listing shows it
   succeeded;
2. **whole job** (before): wait until every task has finished, then download everything.

For each task, the time from its success (when its process ended, read from the sandbox's own
store: Conductor's task records carry no times) to its files on disk (the moment the downloader
says the task's last file is in place), as p50 and p95 for both, the time from the last task's
success to the last frame on disk for the whole-job download, and the ratios. The followed
figure is bounded below by the poll interval: it is the price of one task listing per look.
Figures only; nothing is asserted.

Everything stays on 127.0.0.1. Run: python bench/task_downloads.py [--tasks 20] [--instances 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from frames_job import post_frames_job  # bench/ is the script's own folder

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.transfers.job_outputs import fetch_outputs, wait_for_tasks
from prefect_conductor.conductor_cloud.transfers.task_downloads import (
    TaskDownloaded,
    TaskDownloader,
    listed_downloads,
)
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

OUTPUT_PATH = "/bench/renders"
IMAGES = 2
FRAMES_PER_TASK = 2


def submit(client: ConductorClient, tasks: int) -> str:
    """A job of ``tasks`` tasks, each rendering ``IMAGES`` images x ``FRAMES_PER_TASK`` frames."""
    return post_frames_job(client, OUTPUT_PATH, tasks, FRAMES_PER_TASK, IMAGES)


def succeeded_at(server: SandboxServer, jid: str) -> dict[str, float]:
    """When each task's process ended, as the sandbox recorded it (``tid`` -> epoch seconds)."""
    rows = server.context.store.query(
        "SELECT tid, run_ended FROM tasks WHERE jid = ? ORDER BY tid", int(jid)
    )
    return {f"{row['tid']:03d}": float(row["run_ended"]) for row in rows}


def recorder(landed: dict[str, float]) -> Callable[[TaskDownloaded], None]:
    def arrived(done: TaskDownloaded) -> None:
        landed[done.tid] = time.time()

    return arrived


def followed(client: ConductorClient, jid: str, folder: Path, poll: float) -> dict[str, float]:
    """Each task's files on disk as it succeeds: tid -> when its last file was in place."""
    landed: dict[str, float] = {}
    fetch_outputs(
        client, jid, folder, wait_seconds=600, poll_seconds=poll, on_task=recorder(landed)
    )
    return landed


def whole_job(client: ConductorClient, jid: str, folder: Path, poll: float) -> dict[str, float]:
    """Before: wait for every task, then download everything (tid -> when its files landed)."""
    landed: dict[str, float] = {}
    states = wait_for_tasks(client, jid, poll_seconds=poll, timeout_seconds=600)
    downloader = TaskDownloader(client, jid, folder, on_task=recorder(landed))
    downloader.fetch(listed_downloads(client, jid, len(states)))
    return landed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(share * 100) - 1]


def figures(name: str, success: dict[str, float], landed: dict[str, float]) -> list[float]:
    waits = [landed[tid] - success[tid] for tid in sorted(landed)]
    print(
        f"  {name:<10} p50 {percentile(waits, 0.5):6.2f} s   p95 {percentile(waits, 0.95):6.2f} s"
        f"   ({len(waits)} tasks)"
    )
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--frame-seconds", type=float, default=0.3)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--output-bytes", type=int, default=1024 * 1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-task-downloads-") as scratch:
        root = Path(scratch)
        server = SandboxServer(root / "sandbox", task_seconds=0.2).start()
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        handle.config(
            instances=args.instances,
            frame_seconds=args.frame_seconds,
            output_bytes=args.output_bytes,
        )
        try:
            os.environ["CONDUCTOR_URL"] = server.url
            os.environ["CONDUCTOR_API_KEY"] = server.api_key
            with ConductorClient(token_cache_dir=root / "tokens") as client:
                print(
                    f"{args.tasks} tasks x {IMAGES} images x {FRAMES_PER_TASK} frames of"
                    f" {args.output_bytes} bytes on {args.instances} stand-in instances,"
                    f" {args.frame_seconds:g} s a frame, a look every {args.poll_seconds:g} s"
                )
                print("time from a task's success to its files on disk:")
                jid = submit(client, args.tasks)
                early = followed(client, jid, root / "followed", args.poll_seconds)
                follow_waits = figures("followed", succeeded_at(server, jid), early)
                jid = submit(client, args.tasks)
                late = whole_job(client, jid, root / "whole", args.poll_seconds)
                success = succeeded_at(server, jid)
                whole_waits = figures("whole job", success, late)
                tail = max(late.values()) - max(success.values())
                print(f"  whole job: last task's success to last frame on disk {tail:.2f} s")
                ratio50 = percentile(whole_waits, 0.5) / max(percentile(follow_waits, 0.5), 1e-9)
                ratio95 = percentile(whole_waits, 0.95) / max(percentile(follow_waits, 0.95), 1e-9)
                print(f"  whole job / followed: p50 x{ratio50:.1f}, p95 x{ratio95:.1f}")
        finally:
            handle.close()
            server.stop()


if __name__ == "__main__":
    main()
