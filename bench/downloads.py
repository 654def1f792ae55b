"""Download figures: ours beside ciocore's own downloader, a resumed download, peak memory.

1. Throughput for many small files and for a few large ones: our ``download_job`` beside ciocore
   9.2's ``JobDownloader`` (through its ``LoggingDownloadRunner``, reporting on), each in its own
   process (the sandbox runs in this one) against the same sandbox, each into a fresh folder,
   printed as a ratio; both timings include signing in, listing, fetching and reporting.
   Skipped with a message when ciocore is not installed.
2. A download killed half-way (SIGINT to ``prefect-conductor download``, each file slowed by an
   injected delay so "half-way" is reachable on loopback) and started again: bytes fetched the
   second time, and whether any file complete before the kill was fetched again (its inode and
   mtime would change).
3. Peak RSS of a ``prefect-conductor download`` subprocess fetching one large file (256 MiB, or
   ``--big 2G``): the transfer holds one fixed buffer, so it should not grow with the file.

Everything stays on 127.0.0.1. Run: python bench/downloads.py [--big 2G]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from frames_job import post_frames_job  # bench/ is the script's own folder

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.transfers.job_outputs import download_job, wait_for_tasks
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

MIB = 1024 * 1024
OUTPUT_PATH = "/bench/renders"
CIOCORE_SCRIPT = """
import sys, time, logging
logging.disable(logging.CRITICAL)
from ciocore.downloader.logging_download_runner import LoggingDownloadRunner
runner = LoggingDownloadRunner(
    jobids=[sys.argv[1]], output_path=sys.argv[2], num_threads=4, disable_reporting=False
)
started = time.perf_counter()
runner.run()
print(time.perf_counter() - started)
"""


def size_arg(text: str) -> int:
    """``256M``, ``2G`` or a byte count."""
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def submit(
    client: ConductorClient, handle: SandboxHandle, tasks: int, frames: int, images: int, size: int
) -> str:
    """A job of ``tasks`` tasks, each rendering ``images`` images x ``frames`` frames of ``size``
    bytes; returns its jid once every task has finished."""
    handle.config(output_bytes=size)
    jid = post_frames_job(client, OUTPUT_PATH, tasks, frames, images)
    wait_for_tasks(client, jid, poll_seconds=0.05, timeout_seconds=600)
    return jid


OURS_SCRIPT = """
import sys, time
from pathlib import Path
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.transfers.job_outputs import download_job
with ConductorClient() as client:
    started = time.perf_counter()
    download_job(client, sys.argv[1], Path(sys.argv[2]))
    print(time.perf_counter() - started)
"""


def timed_download(
    script: str, server: SandboxServer, jid: str, folder: Path, home: Path
) -> float | None:
    """Seconds one downloader took, run in its own process (as the sandbox is not)."""
    env = {
        **os.environ,
        "CONDUCTOR_URL": server.url,
        "CONDUCTOR_API_KEY": server.api_key,
        "HOME": str(home),
        "CIO_DISABLE_VERSION_CHECK": "1",
    }
    finished = subprocess.run(
        [sys.executable, "-c", script, jid, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if finished.returncode != 0:
        print(f"  failed: {finished.stderr.strip().splitlines()[-1:]}")
        return None
    return float(finished.stdout.strip().splitlines()[-1])


def files_in(folder: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(folder)): p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(".part")
    }


def reuse_cost(url: str) -> tuple[float, float]:
    """Milliseconds per GET of ``url`` on one reused connection, and on a new one each time."""

    figures = []
    for limits in (httpx.Limits(), httpx.Limits(max_keepalive_connections=0)):
        with httpx.Client(limits=limits) as http:
            http.get(url)
            started = time.perf_counter()
            for _ in range(20):
                http.get(url)
            figures.append((time.perf_counter() - started) / 20 * 1000)
    return figures[0], figures[1]


def throughput(
    server: SandboxServer,
    client: ConductorClient,
    handle: SandboxHandle,
    work: Path,
    label: str,
    shape: tuple[int, int, int, int],
) -> None:
    handle.reset()
    jid = submit(client, handle, *shape)
    tasks = [task for page in client.download_pages(jid) for task in page]
    total = sum(task.size for task in tasks)
    ours_folder = work / f"{label}-ours"
    ours = timed_download(OURS_SCRIPT, server, jid, ours_folder, work / "home")
    theirs_folder = work / f"{label}-ciocore"
    theirs = None
    if importlib.util.find_spec("ciocore") is not None:
        theirs = timed_download(CIOCORE_SCRIPT, server, jid, theirs_folder, work / "home")
    print(f"{label}: {sum(len(t.files) for t in tasks)} files, {total / MIB:.1f} MiB")
    if ours is None:
        return
    print(f"  ours: {ours:.2f} s, {total / MIB / ours:.1f} MiB/s")
    if tasks[0].files[0].size < MIB:
        reused, fresh = reuse_cost(tasks[0].files[0].url)
        print(
            f"  (one GET from the sandbox: {reused:.1f} ms on a reused connection, {fresh:.1f} ms"
            " on a new one; ours reuses connections, ciocore opens one per file)"
        )
    if theirs is None:
        print("  ciocore: not installed (pip install ciocore) or failed; no ratio")
        return
    got = files_in(theirs_folder / jid) if (theirs_folder / jid).exists() else {}
    print(
        f"  ciocore: {theirs:.2f} s, {total / MIB / theirs:.1f} MiB/s ({len(got)} files);"
        f" ratio ciocore/ours = {theirs / ours:.2f}x"
    )
    shutil.rmtree(ours_folder, ignore_errors=True)
    shutil.rmtree(theirs_folder, ignore_errors=True)


def cli(*args: str, server: SandboxServer) -> tuple[list[str], dict[str, str]]:
    """The ``prefect-conductor`` command line and environment for this sandbox."""
    env = {**os.environ, "CONDUCTOR_URL": server.url, "CONDUCTOR_API_KEY": server.api_key}
    return [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()", *args], env


def resume(
    server: SandboxServer, client: ConductorClient, handle: SandboxHandle, work: Path
) -> None:
    handle.reset()
    jid = submit(client, handle, tasks=10, frames=2, images=2, size=4 * MIB)  # 40 files
    handle.faults(
        {"method": "GET", "path": "/_storage/out/*", "action": "delay", "seconds": 0.1, "times": 0}
    )
    folder = work / "resume"
    command, env = cli("download", jid, "--output", str(folder), "--workers", "1", server=server)
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while len(files_in(folder / jid)) < 20 if (folder / jid).exists() else True:
        if process.poll() is not None:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    before = {
        name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in files_in(folder / jid).items()
    }
    handle.clear_faults()
    result = download_job(client, jid, folder)
    after = files_in(folder / jid)
    refetched = [
        n
        for n, (ino, mtime) in before.items()
        if (after[n].stat().st_ino, after[n].stat().st_mtime_ns) != (ino, mtime)
    ]
    stats = result.stats
    print(
        f"resume: killed (exit {process.returncode}) with {len(before)} of"
        f" {stats.files_total} files complete; the second run fetched"
        f" {stats.bytes_fetched / MIB:.1f} MiB ({stats.files_total - stats.files_skipped}"
        f" files), skipped {result.stats.files_skipped}; files complete before the kill fetched"
        f" again: {len(refetched)} ({sum(after[n].stat().st_size for n in refetched)} bytes)"
    )


def peak_rss(
    server: SandboxServer, client: ConductorClient, handle: SandboxHandle, work: Path, big: int
) -> None:
    handle.reset()
    jid = submit(client, handle, tasks=1, frames=1, images=1, size=big)
    folder = work / "big"
    command, env = cli("download", jid, "--output", str(folder), server=server)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    if finished.returncode != 0:
        print(f"big file: download failed: {finished.stderr.strip().splitlines()[-1:]}")
        return
    print(
        f"big file: {big / MIB:.0f} MiB in {took:.1f} s (whole command);"
        f" peak RSS of the download process {peak / 1024:.0f} MiB"
        + ("" if peak > before else " (an earlier child was larger: figure is an upper bound)")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=size_arg, default=256 * MIB, help="large file size (2G)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-downloads-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    try:
        with SandboxServer(work / "sandbox", task_seconds=0.01) as server:
            os.environ["CONDUCTOR_URL"] = server.url
            os.environ["CONDUCTOR_API_KEY"] = server.api_key
            handle = SandboxHandle(server.url, server.api_key, server.data_dir)
            with ConductorClient(token_cache_dir=work / "tokens") as client:
                peak_rss(server, client, handle, work, args.big)
                throughput(server, client, handle, work, "many small", (100, 2, 2, 16 * 1024))
                throughput(server, client, handle, work, "few large", (2, 1, 2, 64 * MIB))
                resume(server, client, handle, work)
            handle.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
