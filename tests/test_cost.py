"""Cost: the price table, the estimate from scout task times, the budget gate, the instance-hours
of a finished job, the cost labels, the watcher ending approvals nobody answered in time, and the
preview's estimate from an earlier run's frame time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock
from prefect_conductor.conductor_cloud.cost.budget import approval_reason, budget_for
from prefect_conductor.conductor_cloud.cost.estimate import (
    estimate_job,
    frame_time_variable,
    per_frame_tile,
    wall_seconds,
)
from prefect_conductor.conductor_cloud.cost.prices import Price, parse_prices, unpriced
from prefect_conductor.conductor_cloud.cost.usage import job_instance_hours
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.job.catalog import save_catalog
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.submission.payload import cost_labels
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from tests.scenes import EXAMPLES, make_job

PRICES = {"n1-standard-8": {"preemptible": 0.1, "on_demand": 0.4}}


def test_prices_parse_from_an_object_or_json_text() -> None:
    assert parse_prices(PRICES) == {"n1-standard-8": Price(0.1, 0.4)}
    assert parse_prices(json.dumps(PRICES))["n1-standard-8"].hourly(preemptible=False) == 0.4
    assert unpriced(["n1-standard-8", "n1-highmem-4"], parse_prices(PRICES)) == ["n1-highmem-4"]


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("{nope", "conductor-prices: not JSON (expected an object of instance types)"),
        ([1], "conductor-prices: expected an object of instance types, got list"),
        ({"a": 3}, "conductor-prices: 'a': expected"),
        ({"a": {"preemptible": "1", "on_demand": 2}}, "conductor-prices: 'a'.preemptible: must be"),
        ({"a": {"preemptible": 1}}, "conductor-prices: 'a'.on_demand: must be a number"),
        ({"a": {"preemptible": -1, "on_demand": 1}}, "conductor-prices: 'a'.preemptible: must be"),
        ({"a": {"preemptible": 1, "on_demand": 1, "gpu": 2}}, "conductor-prices: 'a'.gpu: unknown"),
    ],
)
def test_a_malformed_price_table_is_one_line_naming_the_variable_and_key(
    value: object, line: str
) -> None:
    with pytest.raises(UserError) as caught:
        parse_prices(value)
    assert str(caught.value).startswith(line) and "\n" not in str(caught.value)


def clock_of(spans: dict[str, tuple[float, float]], gap: float = 1.0) -> TaskClock:
    """A clock that looked every ``gap`` seconds and saw each task run over its span."""
    clock = TaskClock()
    end = max(stop for _, stop in spans.values())
    now = 0.0
    while now <= end + gap:
        looks = []
        for tid, (start, stop) in spans.items():
            status = (
                TaskStatus.PENDING
                if now < start
                else TaskStatus.RUNNING
                if now < stop
                else TaskStatus.SUCCESS
            )
            looks.append((tid, status))
        clock.observe(looks, now)
        now += gap
    return clock


def test_a_job_s_instance_hours_are_the_sum_of_its_task_times() -> None:
    clock = clock_of({"000": (0, 1800), "001": (0, 3600)}, gap=60)
    usage = job_instance_hours(clock)
    assert usage.instance_hours == pytest.approx(1.5)
    assert usage.tasks == 2 and usage.resolution_seconds == 60
    assert usage.cost(Price(0.1, 0.4), preemptible=True) == pytest.approx(0.15)
    assert usage.cost(None, preemptible=True) is None
    assert job_instance_hours(clock, {"000"}).instance_hours == pytest.approx(0.5)
    assert job_instance_hours(TaskClock()).tasks == 0


def test_the_estimate_scales_the_scouts_frame_time_to_the_full_job() -> None:
    # Two scouts of 2 frames took 100 s and 120 s: 55 s a frame. The full job: 3 tasks of 2
    # frames and one of 4, on 2 machines.
    measured = per_frame_tile({"000": 100.0, "001": 120.0}, {"000": 2, "001": 2})
    assert measured == (55.0, 2)
    estimate = estimate_job(
        task_frames=[2, 2, 2, 4],
        frame_tile_seconds=55.0,
        measured_tasks=2,
        resolution_seconds=5.0,
        mean_measured_seconds=110.0,
        instance_type="n1-standard-8",
        preemptible=True,
        max_instances=2,
        price=Price(0.1, 0.4),
    )
    assert estimate.instance_hours == pytest.approx(550 / 3600)
    assert estimate.wall_seconds == pytest.approx(330.0)  # 110+220 on one machine, 110+110 on two
    assert estimate.cost == pytest.approx(550 / 3600 * 0.1)
    assert estimate.relative_error == pytest.approx(5 / 110)
    line = estimate.line()
    assert "0.15 instance-hours" in line and "in the prices' currency" in line
    assert "to within 5.0 s" in line
    assert "| Cost (in the prices' currency) | 0.02 |" in estimate.markdown()


def test_wall_time_with_unlimited_machines_is_the_longest_task() -> None:
    assert wall_seconds([10, 30, 20], 0) == 30
    assert wall_seconds([10, 30, 20], 1) == 60
    assert wall_seconds([], 3) == 0


def test_without_timing_or_price_the_estimate_says_so_and_never_guesses() -> None:
    untimed = estimate_job(
        task_frames=[2, 2],
        frame_tile_seconds=None,
        measured_tasks=0,
        resolution_seconds=None,
        mean_measured_seconds=None,
        instance_type="n1-standard-8",
        preemptible=True,
        max_instances=0,
        price=Price(0.1, 0.4),
    )
    assert untimed.instance_hours is None and untimed.cost is None
    assert untimed.line().startswith("Estimate: no timing")
    unpriced_estimate = estimate_job(
        task_frames=[2],
        frame_tile_seconds=10.0,
        measured_tasks=1,
        resolution_seconds=1.0,
        mean_measured_seconds=20.0,
        instance_type="x-large",
        preemptible=False,
        max_instances=0,
        price=None,
    )
    assert unpriced_estimate.cost is None and "no price for x-large" in unpriced_estimate.line()


def test_the_budget_gate_fails_safe() -> None:
    priced = estimate_job(
        task_frames=[2],
        frame_tile_seconds=3600.0,
        measured_tasks=1,
        resolution_seconds=1.0,
        mean_measured_seconds=7200.0,
        instance_type="n1-standard-8",
        preemptible=False,
        max_instances=0,
        price=Price(0.1, 0.4),
    )  # 2 instance-hours, 0.8 in the prices' currency
    assert approval_reason("auto", None, priced) is None
    assert approval_reason("auto", 1.0, priced) is None
    assert "over the budget 0.50" in (approval_reason("auto", 0.5, priced) or "")
    assert approval_reason("manual", 1.0, priced) == "manual approval"
    untimed = estimate_job(
        task_frames=[2],
        frame_tile_seconds=None,
        measured_tasks=0,
        resolution_seconds=None,
        mean_measured_seconds=None,
        instance_type="n1-standard-8",
        preemptible=False,
        max_instances=0,
        price=None,
    )
    assert "has no cost" in (approval_reason("auto", 5.0, untimed) or "")
    assert approval_reason("auto", None, untimed) is None


def test_a_project_s_default_budget_applies_when_the_job_names_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_PROJECT_BUDGETS", '{"default": 25}')
    defaults = get_settings().project_budgets
    assert budget_for(0, "default", defaults) == 25
    assert budget_for(10, "default", defaults) == 10
    assert budget_for(0, "other", defaults) is None
    monkeypatch.setenv("PREFECT_CONDUCTOR_PROJECT_BUDGETS", '{"default": -1}')
    with pytest.raises(UserError, match="^PREFECT_CONDUCTOR_PROJECT_BUDGETS: "):
        get_settings()


def test_the_budget_field_is_named_when_wrong() -> None:
    with pytest.raises(ValueError, match="budget"):
        make_job(budget=-3)
    assert make_job(budget="").budget == 0
    assert make_job(budget="12.5").budget == 12.5


def test_cost_labels_are_strings_from_the_job_and_its_title() -> None:
    assert cost_labels(make_job()) == {
        "project": "default",
        "shot": "shot010",
        "department": "lighting",
    }
    assert cost_labels(make_job(title="hero")) == {"project": "default", "shot": "hero"}


def test_a_frame_time_variable_name_is_a_valid_prefect_variable_name() -> None:
    name = frame_time_variable("Shot Project", "shot010 lighting")
    assert name == frame_time_variable("Shot Project", "shot010 lighting")
    assert name != frame_time_variable("Shot Project", "shot020 lighting")
    assert name.startswith("conductor-frame-time-") and name == name.lower() and " " not in name


@pytest.mark.usefixtures("prefect_backend")
def test_the_watcher_ends_an_approval_nobody_answered_in_time() -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Suspended

    from prefect_conductor.flows.watch_jobs import end_timed_out_approvals
    from prefect_conductor.tasks.approve import APPROVAL_TAG

    @flow(name="waits-for-approval")
    def waits() -> None:
        return None

    with get_client(sync_client=True) as client:
        late = client.create_flow_run(waits, tags=[APPROVAL_TAG], parameters={})
        client.set_flow_run_state(late.id, Suspended(timeout_seconds=60, pause_key="a"), force=True)
        fresh = client.create_flow_run(waits, tags=[APPROVAL_TAG], parameters={})
        client.set_flow_run_state(
            fresh.id, Suspended(timeout_seconds=3600, pause_key="b"), force=True
        )
        ended = end_timed_out_approvals(client, now=datetime.now(UTC) + timedelta(minutes=5))
        assert late.id in ended and fresh.id not in ended
        state = client.read_flow_run(late.id).state
        assert state is not None and state.is_cancelled()
        assert state.message is not None and state.message.startswith(
            "no approval within 1 minutes"
        )
        kept = client.read_flow_run(fresh.id).state
        assert kept is not None and kept.name == "Suspended"


@pytest.mark.usefixtures("cli_subprocess")
def test_preview_shows_an_estimate_from_an_earlier_run_s_frame_time(
    prefect_server: str, tmp_path: Path
) -> None:
    with httpx.Client(base_url=prefect_server, timeout=30) as api:
        for name, value in [
            (
                frame_time_variable("default", "shot010 lighting v012"),
                {"frame_seconds": 90.0, "instance_type": "n1-standard-8", "measured_tasks": 2},
            ),
            ("conductor-prices", PRICES),
        ]:
            api.delete(f"/variables/name/{name}")
            assert api.post("/variables/", json={"name": name, "value": value}).status_code == 201
    catalog = save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_CONDUCTOR_HOME": str(tmp_path)}
    args = ["preview", str(EXAMPLES / "job.yaml"), "--catalog", str(catalog)]
    code = "from prefect_conductor.cli.main import main; main()"
    shown = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("Frames: ")
    # The full job of the sample: 3 tasks of 2 frames at 90 s a frame = 0.15 instance-hours.
    assert lines[1].startswith("Estimate: 0.15 instance-hours"), lines[:3]
    assert "cost 0.01 in the prices' currency" in lines[1]
    offline = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        timeout=120,
    )
    assert offline.returncode == 0 and "Estimate" not in offline.stdout
