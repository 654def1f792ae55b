"""The deployment's Custom run form in the real Prefect UI, driven in headless Chromium.

A real ``prefect server start`` (UI on) on loopback, the flow served with the sample job as its
default parameters, Debian's chromium driven by playwright (never ``playwright install``): no
field shows the nullable toggle ('Property is type "None"'), the Task Template description shows
its tokens, and pressing Submit runs the flow to Completed against the sandbox. Without
/usr/bin/chromium this test is skipped naming the package (under CI, where .ci/run installs it,
it fails).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.deployment_params import deployment_parameters
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.prefect_server import flow_runs, running_prefect_server
from tests.scenes import EXAMPLES

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEPLOYMENT = "render-submit/ui-form"
SERVE = (
    "import json, sys\n"
    "from prefect_conductor.flows.render_submit import render_submit\n"
    "render_submit.serve(name='ui-form', parameters=json.loads(sys.argv[1]))\n"
)


def null_toggles(schema: Any, where: str = "") -> list[str]:
    """Every place in a JSON schema that allows null (the UI draws those as a None toggle)."""
    found: list[str] = []
    if isinstance(schema, dict):
        options = schema.get("anyOf") or schema.get("oneOf") or []
        if schema.get("type") == "null" or any(o.get("type") == "null" for o in options):
            found.append(where)
        for key, value in schema.items():
            found += null_toggles(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += null_toggles(value, f"{where}/{index}")
    return found


@pytest.fixture(scope="module")
def ui_server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_prefect_server(tmp_path_factory.mktemp("ui-server"), timeout=240) as api:
        yield api


@pytest.fixture
def served(ui_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The flow served as ``render-submit/ui-form`` with the sample job as default parameters."""
    parameters = json.loads(
        deployment_parameters(EXAMPLES / "job.yaml", scene=EXAMPLES / "scene_export.json")
    )
    # The form's run ends at full-submit: following the render needs the watch-jobs deployment,
    # which test_waiting covers.
    parameters["options"] = {"poll_seconds": 0.05, "follow": "no"}
    env = {
        **os.environ,
        "PREFECT_API_URL": ui_server,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "CONDUCTOR_URL": sandbox.url,
        "CONDUCTOR_API_KEY": sandbox.api_key,
        "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home"),
    }
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, json.dumps(parameters)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=ui_server, timeout=10) as api:
            while True:
                answer = api.get(f"/deployments/name/{DEPLOYMENT}")
                if answer.status_code == 200:
                    break
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "the flow was not served in 120 s"
                time.sleep(0.5)
        yield answer.json()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for_final_state(api: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=api, timeout=10) as client:
        while True:
            answer = client.get(f"/flow_runs/{run_id}")
            if answer.status_code == 200:  # SQLite-backed servers answer 503 when busy
                run: dict[str, Any] = answer.json()
                if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    return run
            assert time.monotonic() < deadline, f"run {run_id} did not finish in {timeout} s"
            time.sleep(1)


def submit_the_form(page: Any, api: str, deployment_id: str, tmp_path: Path) -> None:
    """Press Submit until the server has the run (the UI then leaves the form).

    A busy SQLite-backed server can refuse the UI's create call (503), and the UI then stays on
    the form with an error; the press is repeated only while no run exists, so a slow answer
    never makes a second run.
    """
    for _ in range(3):
        page.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            if flow_runs(api, deployment_id):
                page.wait_for_url(lambda url: not url.endswith("/run"), timeout=60_000)
                return
            time.sleep(1)
    page.screenshot(path=str(tmp_path / "submitted.png"), full_page=True)
    raise AssertionError(
        f"no flow run after 3 presses of Submit; screenshot {tmp_path / 'submitted.png'}:\n"
        + page.locator("body").inner_text()[:3000]
    )


def test_the_custom_run_form_shows_every_field_plainly_and_runs(
    chromium: Path, ui_server: str, served: dict[str, Any], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    assert null_toggles(served["parameter_openapi_schema"]) == []
    ui = ui_server.removesuffix("/api")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.goto(f"{ui}/deployments/deployment/{served['id']}/run")
            try:
                page.get_by_text("Task Template").first.wait_for(timeout=90_000)
            except Exception:
                page.screenshot(path=str(tmp_path / "form.png"), full_page=True)
                raise AssertionError(
                    f"no Task Template field; screenshot {tmp_path / 'form.png'}:\n"
                    + page.locator("body").inner_text()[:3000]
                ) from None
            text = page.locator("body").inner_text()
            assert 'Property is type "None"' not in text
            assert "<render_package>" in text and "<tile_number>" in text
            assert "Export File" in text and "Saved Project" in text
            submit_the_form(page, ui_server, served["id"], tmp_path)
        finally:
            browser.close()
    runs = flow_runs(ui_server, served["id"])
    assert len(runs) == 1, runs
    run = wait_for_final_state(ui_server, runs[0]["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["deployment_id"] == served["id"]
    assert len(sandbox.jobs()) == 2  # the scout job, then the rest
