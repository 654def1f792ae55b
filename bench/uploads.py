"""Upload pipeline figures: hashing throughput, a second submission, and ours beside ciocore.

1. Hashing: our parallel, cached ``hash_files`` over 256 MiB of fresh files, beside plain
   single-threaded ``hashlib.md5`` over the same bytes.
2. A second submission of the same files: time and bytes hashed (the md5 cache makes it zero)
   and bytes uploaded (the server already has them).
3. Upload of the same file set to a fresh sandbox: ours (``upload_files`` + ``submit_job``)
   beside ciocore's ``conductor_submit.Submit`` (in a subprocess), for many small files and for a
   few large ones. Skipped with a message when ciocore is not installed (pip install ciocore).

Everything stays on 127.0.0.1. Run: python bench/uploads.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.uploads import hash_files, upload_files
from prefect_conductor.sandbox.ciocore_env import ciocore_environment
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.server import SandboxServer

MIB = 1024 * 1024
CIOCORE_SCRIPT = """
import sys, json, time
from ciocore import conductor_submit
paths = json.loads(open(sys.argv[1]).read())
started = time.perf_counter()
submit = conductor_submit.Submit({
    "instance_type": "n1-standard-8", "project": "default", "output_path": "/renders",
    "tasks_data": [{"command": "echo", "frames": "1"}], "upload_paths": paths,
    "local_upload": True, "md5_caching": False, "database_filepath": sys.argv[2],
})
response, status = submit.main()
assert status == 201, status
print(time.perf_counter() - started)
"""


def make_files(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, MIB))
    paths = []
    for n in range(count):
        path = folder / f"f{n:04d}.bin"
        with path.open("wb") as stream:
            written = 0
            while written < size:
                chunk = block[: size - written]
                stream.write(bytes([n % 256]) + chunk[1:])
                written += len(chunk)
        paths.append(path)
    return paths


def plain_md5(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        digest = hashlib.md5()
        with path.open("rb") as stream:
            while chunk := stream.read(MIB):
                digest.update(chunk)
    return time.perf_counter() - started


def _md5_in_memory(mebibytes: int) -> int:
    block = b"\x5a" * MIB
    digest = hashlib.md5()
    for _ in range(mebibytes):
        digest.update(block)
    return mebibytes


def cpu_parallelism() -> float:
    """How much faster two processes hash than one, on this machine: the ceiling for threads."""
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_md5_in_memory, [1, 1]))
        started = time.perf_counter()
        _md5_in_memory(256)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        list(pool.map(_md5_in_memory, [128, 128]))
        return alone / (time.perf_counter() - started)


def ciocore_md5(paths: list[Path]) -> float | None:
    """ciocore's own md5 routine (64 KiB reads, one file after another), when installed."""
    if importlib.util.find_spec("ciocore") is None:
        return None
    from ciocore import common

    started = time.perf_counter()
    for path in paths:
        common.get_base64_md5(str(path))
    return time.perf_counter() - started


def hashing(work: Path) -> None:
    files = make_files(work / "hash", 16, 16 * MIB)
    total = sum(p.stat().st_size for p in files)
    plain_md5(files)  # warm the page cache for both
    plain = plain_md5(files)
    cache = Md5Cache(work / "hash.sqlite")
    started = time.perf_counter()
    hash_files(files, cache=cache)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    hash_files(files, cache=cache)
    cached = time.perf_counter() - started
    theirs = ciocore_md5(files)
    rate = total / MIB
    print(
        f"hashing {rate:.0f} MiB: hashlib.md5 {plain:.2f} s ({rate / plain:.0f} MiB/s),"
        f" ours {ours:.2f} s ({rate / ours:.0f} MiB/s), ratio {plain / ours:.2f}x;"
        f" again from the cache {cached * 1000:.1f} ms"
    )
    if theirs is not None:
        print(f"  ciocore get_base64_md5: {theirs:.2f} s, ratio ciocore/ours {theirs / ours:.2f}x")
    print(
        f"  (this machine: {os.cpu_count()} CPUs, two processes hash {cpu_parallelism():.2f}x"
        " as fast as one; that is the ceiling for parallel hashing here)"
    )


def ours_upload(
    server: SandboxServer, files: list[Path], work: Path, tag: str
) -> tuple[float, int, int]:
    with ConductorClient(
        server.url, ApiKey.from_text(server.api_key), token_cache_dir=work / "tok"
    ) as client:
        started = time.perf_counter()
        result = upload_files(
            client, files, project="default", cache=Md5Cache(work / f"{tag}.sqlite")
        )
        entries = [{"md5": f.md5, "destination": f.path} for f in result.files]
        client.submit_job(
            {
                "instance_type": "n1-standard-8",
                "project": "default",
                "output_path": "/renders",
                "tasks_data": [{"command": "echo", "frames": "1"}],
                "upload_files": entries,
            },
            f"bench-{tag}-{time.time()}",
        )
        return time.perf_counter() - started, result.bytes_hashed, result.bytes_uploaded


def ciocore_upload(server: SandboxServer, files: list[Path], work: Path, tag: str) -> float | None:
    if importlib.util.find_spec("ciocore") is None:
        return None
    listing = work / f"{tag}.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    env = ciocore_environment(server.url, server.api_key, work / "home")
    finished = subprocess.run(
        [sys.executable, "-c", CIOCORE_SCRIPT, str(listing), str(work / f"{tag}-cio.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if finished.returncode != 0:
        print(f"  ciocore failed: {finished.stderr.strip().splitlines()[-1:]}")
        return None
    return float(finished.stdout.strip().splitlines()[-1])


def compare(
    server: SandboxServer, handle: SandboxHandle, work: Path, label: str, files: list[Path]
) -> None:
    handle.reset()
    ours, _, uploaded = ours_upload(server, files, work, label)
    again, hashed_again, uploaded_again = ours_upload(server, files, work, label)
    handle.reset()
    theirs = ciocore_upload(server, files, work, label)
    size = sum(p.stat().st_size for p in files) / MIB
    print(f"{label}: {len(files)} files, {size:.1f} MiB")
    print(
        f"  ours: {ours:.2f} s ({uploaded / MIB:.1f} MiB sent);"
        f" second submission {again:.2f} s, {hashed_again} bytes hashed,"
        f" {uploaded_again} bytes uploaded"
    )
    if theirs is None:
        print("  ciocore: not installed (pip install ciocore) or failed; no ratio")
    else:
        print(f"  ciocore: {theirs:.2f} s; ratio ciocore/ours = {theirs / ours:.1f}x")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    try:
        hashing(work)
        with SandboxServer(work / "sandbox", task_seconds=0.01) as server:
            handle = SandboxHandle(server.url, server.api_key, server.data_dir)
            handle.config(multipart_threshold=1024 * MIB)  # single-part for both clients
            compare(server, handle, work, "many small", make_files(work / "small", 200, 8 * 1024))
            compare(server, handle, work, "few large", make_files(work / "large", 3, 64 * MIB))
            handle.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
