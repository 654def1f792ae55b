"""Conductor's limits hold across workers: Prefect global concurrency limits.

Three ``prefect-conductor submit`` processes with different submission keys run at once against
one real Prefect server while the sandbox takes half a second to answer ``POST jobs/``. With the
job-post limit at 1, the sandbox never serves two job posts at once; its in-flight gauge is the
witness, since only the server sees all workers.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.inflight import InFlight, counted
from prefect_conductor.tasks.conductor_limits import limit_for
from tests.cli_submits import submit_at_once

RUNS = 3


def test_limit_names_and_sizes_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limit_for("job-post") == ("prefect-conductor-job-posts", 4)
    assert limit_for("upload") == ("prefect-conductor-uploads", 8)
    monkeypatch.setenv("PREFECT_CONDUCTOR_JOB_POST_LIMIT_NAME", "studio-posts")
    monkeypatch.setenv("PREFECT_CONDUCTOR_JOB_POST_LIMIT", "2")
    monkeypatch.setenv("PREFECT_CONDUCTOR_UPLOAD_LIMIT", "3")
    assert limit_for("job-post") == ("studio-posts", 2)
    assert limit_for("upload") == ("prefect-conductor-uploads", 3)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PREFECT_CONDUCTOR_JOB_POST_LIMIT", "0"),
        ("PREFECT_CONDUCTOR_UPLOAD_LIMIT", "many"),
        ("PREFECT_CONDUCTOR_UPLOAD_LIMIT_NAME", "no spaces please"),
        ("PREFECT_CONDUCTOR_LIMIT_WAIT_SECONDS", "-1"),
    ],
)
def test_a_bad_limit_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError) as raised:
        get_settings()
    assert str(raised.value).startswith(f"{variable}: ")
    assert "\n" not in str(raised.value)


def test_the_in_flight_gauge_keeps_the_most_seen_until_reset() -> None:
    gauges = InFlight()
    for _ in range(3):
        gauges.enter("job_posts")
    gauges.leave("job_posts")
    gauges.leave("job_posts")
    assert gauges.snapshot()["job_posts"] == {"now": 1, "max": 3}
    gauges.reset()
    assert gauges.snapshot()["job_posts"] == {"now": 1, "max": 1}
    assert counted("POST", "/jobs/") == "job_posts"
    assert counted("PUT", "/_storage/abc") == "uploads"
    assert counted("GET", "/_storage/out/x") is None
    assert counted("POST", "/jobs/00001/downloads") is None


@pytest.mark.e2e
def test_job_posts_from_concurrent_runs_never_exceed_the_limit(
    prefect_server: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(
        {"method": "POST", "path": "/jobs/", "action": "delay", "seconds": 0.5, "times": 0}
    )
    # Names of their own: the session's server is shared with other tests.
    posts_limit = f"test-job-posts-{uuid.uuid4().hex[:8]}"
    uploads_limit = f"test-uploads-{uuid.uuid4().hex[:8]}"
    limits = {
        "PREFECT_CONDUCTOR_JOB_POST_LIMIT_NAME": posts_limit,
        "PREFECT_CONDUCTOR_JOB_POST_LIMIT": "1",
        "PREFECT_CONDUCTOR_UPLOAD_LIMIT_NAME": uploads_limit,
        "PREFECT_CONDUCTOR_UPLOAD_LIMIT": "1",
    }
    keys = [f"artist-{number}" for number in range(RUNS)]
    submit_at_once(prefect_server, sandbox, tmp_path, keys, limits)
    assert len(sandbox.jobs()) == 2 * RUNS  # a scout and a full job per run
    in_flight = sandbox.state()["in_flight"]
    assert in_flight["job_posts"]["max"] == 1
    assert in_flight["uploads"]["now"] == 0
    limits = {
        limit["name"]: limit
        for limit in httpx.post(f"{prefect_server}/v2/concurrency_limits/filter", json={}).json()
    }
    assert limits[posts_limit]["limit"] == 1
    assert limits[posts_limit]["active_slots"] == 0  # every slot given back
    assert limits[uploads_limit]["active_slots"] == 0
