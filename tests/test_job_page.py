"""The sandbox's job page: the dashboard link a submission prints opens in a browser on this
machine (no token), shows the job's tasks, states, frames and outputs, and escapes what it shows."""

from __future__ import annotations

import httpx

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.test_sandbox import job_body, signed_in


def test_the_dashboard_link_is_a_readable_page_without_a_token(sandbox: SandboxHandle) -> None:
    body = job_body(job_title="shot010 <lighting>", output_path="/show/renders")
    with signed_in(sandbox.url, sandbox.api_key) as http:
        answer = http.post("/jobs/", json=body)
        assert answer.status_code == 201, answer.text
        jid = answer.json()["jobid"]
    page = httpx.get(f"{sandbox.url}/job/{jid}", timeout=10)  # no Authorization header
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "shot010 &lt;lighting&gt;" in text and "<lighting>" not in text
    assert "/show/renders" in text
    for task in body["tasks_data"]:  # type: ignore[attr-defined]
        assert f"<td>{task['frames']}</td>" in text
    assert "Conductor sandbox: a local stand-in" in text
    assert any(state in text for state in ("holding", "pending", "running", "success"))


def test_an_unknown_job_is_a_404_page(sandbox: SandboxHandle) -> None:
    page = httpx.get(f"{sandbox.url}/job/99999", timeout=10)
    assert page.status_code == 404 and "No job 99999" in page.text
