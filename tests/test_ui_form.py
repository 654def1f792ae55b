"""The deployment's Custom run form in the real Prefect UI, driven in headless Chromium.

A real ``prefect server start`` (UI on) on loopback, the flow served with the sample job as its
default parameters, Debian's chromium driven by playwright (never ``playwright install``): no
field shows the nullable toggle ('Property is type "None"'), the fields a job needs are not labelled
"(Optional)", the descriptions show their tokens (``<UDIM>``, ``<render_package>``) and name no
button the UI lacks, and pressing Submit runs the flow to Completed against the sandbox. Without
/usr/bin/chromium this test is skipped naming the package (under CI, where .ci/run installs it,
it fails).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.cli.deployment_params import deployment_parameters
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.prefect_server import flow_runs
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


@pytest.fixture
def served(prefect_server: str, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The flow served as ``render-submit/ui-form`` with the sample job as default parameters."""
    parameters = json.loads(
        deployment_parameters(EXAMPLES / "job.yaml", scene=EXAMPLES / "scene_export.json")
    )
    # The form's run ends at full-submit: following the render needs the watch-jobs deployment,
    # which test_waiting covers.
    parameters["options"] = {"poll_seconds": 0.05, "follow": "no"}
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_server,
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
        with httpx.Client(base_url=prefect_server, timeout=10) as api:

            def deployment() -> dict[str, Any] | None:
                answer = api.get(f"/deployments/name/{DEPLOYMENT}")
                if answer.status_code == 200:
                    return dict(answer.json())
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                return None

            yield eventually(deployment, what="the flow served", timeout=120, interval=0.5)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_for_final_state(api: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
    with httpx.Client(base_url=api, timeout=10) as client:

        def finished() -> dict[str, Any] | None:
            answer = client.get(f"/flow_runs/{run_id}")
            if answer.status_code == 200:  # SQLite-backed servers answer 503 when busy
                run: dict[str, Any] = answer.json()
                if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    return run
            return None

        return eventually(finished, what=f"run {run_id} finished", timeout=timeout, interval=1)


def submit_the_form(page: Any, api: str, deployment_id: str, tmp_path: Path) -> None:
    """Press Submit until the server has the run (the UI then leaves the form).

    A busy SQLite-backed server can refuse the UI's create call (503), and the UI then stays on
    the form with an error; the press is repeated only while no run exists, so a slow answer
    never makes a second run.
    """
    for _ in range(3):
        page.get_by_role("button", name="Submit").click()
        try:
            eventually(lambda: flow_runs(api, deployment_id), what="a run", timeout=45, interval=1)
        except AssertionError:
            continue  # refused: press again
        page.wait_for_url(lambda url: not url.endswith("/run"), timeout=60_000)
        return
    page.screenshot(path=str(tmp_path / "submitted.png"), full_page=True)
    raise AssertionError(
        f"no flow run after 3 presses of Submit; screenshot {tmp_path / 'submitted.png'}:\n"
        + page.locator("body").inner_text()[:3000]
    )


def test_the_custom_run_form_shows_every_field_plainly_and_runs(
    chromium: Path,
    prefect_server: str,
    served: dict[str, Any],
    sandbox: SandboxHandle,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    assert null_toggles(served["parameter_openapi_schema"]) == []
    ui = prefect_server.removesuffix("/api")
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
            assert "<render_package>" in text and "<tile_number>" in text and "<UDIM>" in text
            labels = [line.strip() for line in text.splitlines()]
            assert "Title (Optional)" in labels  # the UI's label for a field with a default
            for required in ("Images", "Project", "Instance Type"):
                assert required in labels and f"{required} (Optional)" not in labels, required
            assert "Refresh" not in text and "hover" not in text.lower()
            assert "Export File" in text and "Saved Project" in text
            submit_the_form(page, prefect_server, served["id"], tmp_path)
        finally:
            browser.close()
    runs = flow_runs(prefect_server, served["id"])
    assert len(runs) == 1, runs
    run = wait_for_final_state(prefect_server, runs[0]["id"])
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["deployment_id"] == served["id"]
    assert len(sandbox.jobs()) == 2  # the scout job, then the rest
