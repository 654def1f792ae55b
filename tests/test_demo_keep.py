"""``prefect-conductor demo --keep``: the run ends at pages a person can open (the sandbox's job
page, the Prefect UI's flow run), both stay up until Ctrl-C, and nothing is left in the temp dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()"]


@pytest.mark.usefixtures("cli_subprocess")
def test_demo_keep_serves_the_job_page_and_the_ui_until_ctrl_c(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
    # A per-user folder of its own: the per-user Prefect server the demo leaves is this test's.
    env.update(
        TMPDIR=str(temp),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CONDUCTOR_HOME=str(tmp_path / "home"),
    )
    process = subprocess.Popen(
        [*CLI, "demo", "--keep"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 240
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if "press Ctrl-C" in line or time.monotonic() > deadline:
                break
        output = "\n".join(lines)
        assert "press Ctrl-C" in output, output
        assert "local stand-in for Conductor's API" in output
        job_link = re.search(r"scout job \S+: .* -> (http://127\.0\.0\.1:\d+/job/\d+)", output)
        ui_link = re.search(r"Prefect flow run: (http://\S+/runs/flow-run/\S+)", output)
        assert job_link and ui_link, output
        page = httpx.get(job_link.group(1), timeout=10)
        assert page.status_code == 200 and "Tasks" in page.text
        run_id = ui_link.group(1).rsplit("/", 1)[-1]
        api = ui_link.group(1).split("/runs/")[0] + "/api"
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        assert run["state"]["type"] == "COMPLETED"
        ui_page = httpx.get(ui_link.group(1), headers={"Accept": "text/html"}, timeout=10)
        assert ui_page.status_code == 200 and "<html" in ui_page.text.lower()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        subprocess.run([*CLI, "server", "stop"], env=env, capture_output=True, timeout=120)
    assert process.returncode == 0, rest
    assert not list(temp.glob("prefect-conductor-demo-*"))
