"""How long Submit holds the artist's session, beside how long the anchor's submitter holds it.

Ours: the ConductorJob item's Submit button in the host (the stand-in ``ix``, the real plugin):
read the item, run the fast checks, save the project, create a flow run on a real Prefect server
(``prefect server start`` on loopback, SQLite). Everything heavy then happens on a worker.

The anchor: Conductor's own host submitter hashes and uploads every file inside the session
before it returns (``local_upload``); measured here with ciocore's ``conductor_submit.Submit``
against the local sandbox, md5 caching off, as the artist's first submission of these files
(skipped with a message when ciocore is not installed). Beside it, the same files hashed and
uploaded in-process by our own uploader: the least any submitter that does the work in the
session could take on this machine.

Everything stays on 127.0.0.1. Run: python bench/submit_latency.py [--files 40] [--mib 4]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prefect_conductor.conductor_cloud.api.auth import ApiKey  # noqa: E402
from prefect_conductor.conductor_cloud.api.client import ConductorClient  # noqa: E402
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache  # noqa: E402
from prefect_conductor.conductor_cloud.transfers.uploads import upload_files  # noqa: E402
from prefect_conductor.sandbox.ciocore_env import ciocore_environment  # noqa: E402
from prefect_conductor.sandbox.handle import SandboxHandle  # noqa: E402
from prefect_conductor.sandbox.server import SandboxServer  # noqa: E402
from tests.host_standin.fixtures import standin_module  # noqa: E402
from tests.prefect_server import (  # noqa: E402
    HOST_TESTS_DEPLOYMENT,
    register_deployment,
    running_prefect_server,
)

MIB = 1024 * 1024
SUBMITS = 7
CIOCORE_SUBMIT = """
import json, sys, time
from ciocore import conductor_submit
paths = json.loads(open(sys.argv[1]).read())
started = time.perf_counter()
response, status = conductor_submit.Submit({
    "instance_type": "n1-standard-8", "project": "default", "output_path": "/renders",
    "tasks_data": [{"command": "echo", "frames": "1-2"}], "upload_paths": paths,
    "local_upload": True, "md5_caching": False, "database_filepath": sys.argv[2],
}).main()
assert status == 201, (status, response)
print(time.perf_counter() - started)
"""


def make_assets(folder: Path, count: int, mebibytes: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        path = folder / f"asset.{index + 1:04d}.bin"
        path.write_bytes(os.urandom(mebibytes * MIB))
        paths.append(path)
    return paths


def build_scene(app: Any, root: Path, assets: Path) -> Any:
    """A saved shot: one image, a shader library folder holding the assets, a ConductorJob."""
    image = app.ui_create("Image", "beauty")
    app.ui_set(image, "render_to_disk", True)
    app.ui_set(image, "save_as", str(root / "renders" / "beauty.####.exr"))
    app.ui_set(image, "last_frame", 10)
    library = app.ui_create("ShaderLibrary", "assets")
    app.ui_set(library, "search_path", str(assets))
    assert app.save_project(str(root / "shot.project"))
    job = app.ui_create("ConductorJob", "ConductorJob")
    app.ui_add(job, "images", image)
    app.ui_press(job, "refresh")
    app.ui_choose(job, "project", "default")
    app.ui_set(job, "use_custom_frames", True)
    app.ui_set(job, "chunk_size", 2)
    return job


def time_submits(app: Any, job: Any) -> tuple[list[float], float]:
    """Submit SUBMITS changed jobs (a new flow run each), then one double-click (the same run)."""
    times = []
    for number in range(SUBMITS):
        app.ui_set(job, "title", f"shot lighting v{number:03d}")
        started = time.perf_counter()
        app.ui_press(job, "submit")
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    app.ui_press(job, "submit")
    repeat = time.perf_counter() - started
    errors = app.lines("error")
    if errors or app.crashes:
        raise SystemExit(f"Submit failed: {errors or app.crashes}")
    return times, repeat


def anchor_ciocore(server: SandboxServer, files: list[Path], work: Path) -> float | None:
    if importlib.util.find_spec("ciocore") is None:
        return None
    listing = work / "paths.json"
    listing.write_text(json.dumps([str(p) for p in files]))
    env = ciocore_environment(server.url, server.api_key, work / "cio-home")
    finished = subprocess.run(
        [sys.executable, "-c", CIOCORE_SUBMIT, str(listing), str(work / "cio.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if finished.returncode != 0:
        print(f"ciocore failed: {finished.stderr.strip().splitlines()[-1:]}")
        return None
    return float(finished.stdout.strip().splitlines()[-1])


def anchor_ours_in_process(server: SandboxServer, files: list[Path], work: Path) -> float:
    with ConductorClient(
        server.url, ApiKey.from_text(server.api_key), token_cache_dir=work / "tokens"
    ) as client:
        started = time.perf_counter()
        upload_files(client, files, project="default", cache=Md5Cache.disabled())
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="dependency files")
    parser.add_argument("--mib", type=int, default=4, help="MiB per file")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    os.environ["PREFECT_CONDUCTOR_HOME"] = str(work / "home")
    root = work / "shot"
    files = make_assets(root / "assets", arguments.files, arguments.mib)
    total = arguments.files * arguments.mib
    with (
        SandboxServer(work / "sandbox", task_seconds=0.01) as server,
        running_prefect_server(work / "prefect") as api_url,
    ):
        os.environ.update(
            CONDUCTOR_URL=server.url,
            CONDUCTOR_API_KEY=server.api_key,
            PREFECT_API_URL=api_url,
            PREFECT_CONDUCTOR_DEPLOYMENT=f"render-submit/{HOST_TESTS_DEPLOYMENT}",
        )
        register_deployment(api_url)
        app = standin_module().reset()
        from prefect_conductor.host_export import conductor_job

        conductor_job.register()
        job = build_scene(app, root, root / "assets")
        submits, repeat = time_submits(app, job)
        uploads = [*files, root / "shot.project"]
        handle = SandboxHandle(server.url, server.api_key, server.data_dir)
        handle.reset()  # a first submission: Conductor has none of these files yet
        anchor = anchor_ciocore(server, uploads, work)
        handle.reset()
        in_process = anchor_ours_in_process(server, uploads, work)
        handle.close()
    median = statistics.median(submits)
    print(f"scene: {arguments.files} files, {total} MiB of dependencies")
    print(
        f"Submit in the host (median of {SUBMITS}, each a new flow run): {median * 1000:.0f} ms"
        f" (min {min(submits) * 1000:.0f}, max {max(submits) * 1000:.0f})"
    )
    print(f"Submit again with nothing changed (same flow run returned): {repeat * 1000:.0f} ms")
    print(
        f"the same files hashed and uploaded in-process by our own uploader (the least any"
        f" in-session submitter could take): {in_process:.2f} s, {in_process / median:.0f}x Submit"
    )
    if anchor is None:
        print("anchor (ciocore Submit) not measured: pip install ciocore")
    else:
        print(
            f"anchor, ciocore Submit with local upload (how Conductor's host plugin submits):"
            f" {anchor:.2f} s holding the session, {anchor / median:.0f}x Submit"
        )


if __name__ == "__main__":
    main()
