"""The re-render job's payload and the ledger of attempts, from posted bodies and task listings."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_conductor.conductor_cloud.api.post_record import submission_tag
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY, TaskStatus
from prefect_conductor.conductor_cloud.errors import ServiceError
from prefect_conductor.conductor_cloud.submission.rerender import (
    RERENDER_ATTEMPT_KEY,
    RERENDER_OF_KEY,
    Ledger,
    rerender_labels,
    rerender_payload,
    still_to_rerender,
    to_rerender,
    untagged_title,
)
from prefect_conductor.conductor_cloud.transfers.job_outputs import TaskState


def posted() -> dict[str, Any]:
    """A full job's body as the submitter posts it (three tasks, preemptible, native scouts)."""
    return {
        "instance_type": "n1-standard-8",
        "project": "default",
        "tasks_data": [
            {"command": "render 1-2", "frames": "1-2"},
            {"command": "render 5-6", "frames": "5-6"},
            {"command": "render 9-10", "frames": "9-10"},
        ],
        "output_path": "/shots/010/renders",
        "autoretry_policy": {"preempted": {"max_retries": 1}},
        "environment": {"PATH": "/opt/jobs/bin"},
        "job_title": "shot010 [remaining frames] [pc-0123456789]",
        "preemptible": True,
        "metadata": {"shot": "010", SUBMISSION_METADATA_KEY: "key:full"},
        "scout_frames": "3,8",
        "software_package_ids": ["abc"],
        "upload_files": [{"destination": "/shots/010/scene.project", "md5": "x=="}],
        "upload_size": 10,
    }


def state(tid: str, frames: str, status: TaskStatus) -> TaskState:
    return TaskState(tid=tid, frames=frames, status=status, command=f"render {frames}")


def test_the_payload_holds_only_the_chosen_tasks_and_says_which_attempt_of_which_job() -> None:
    body = rerender_payload(
        posted(),
        [1],
        attempt=1,
        first_jid="00002",
        submission_id="key:rerender-1",
        on_demand=False,
    )
    assert body["tasks_data"] == [{"command": "render 5-6", "frames": "5-6"}]
    assert body["scout_frames"] == ""
    assert body["job_title"] == (
        f"shot010 [remaining frames] [re-render 1] [{submission_tag('key:rerender-1')}]"
    )
    assert body["metadata"] == {
        "shot": "010",
        SUBMISSION_METADATA_KEY: "key:rerender-1",
        RERENDER_OF_KEY: "00002",
        RERENDER_ATTEMPT_KEY: "1",
    }
    assert all(isinstance(v, str) for v in body["metadata"].values())
    assert body["preemptible"] is True
    assert body["autoretry_policy"] == {"preempted": {"max_retries": 1}}
    unchanged = set(posted()) - {"tasks_data", "scout_frames", "job_title", "metadata"}
    assert {k: body[k] for k in unchanged} == {k: posted()[k] for k in unchanged}
    assert rerender_labels(body) == {"attempt": 1, "first_jid": "00002"}
    assert rerender_labels(posted()) == {}


def test_after_a_preemption_the_attempt_asks_for_on_demand_machines() -> None:
    body = rerender_payload(
        posted(), [0, 2], attempt=2, first_jid="00002", submission_id="k:rerender-2", on_demand=True
    )
    assert body["preemptible"] is False
    assert body["autoretry_policy"] == {}
    assert [t["frames"] for t in body["tasks_data"]] == ["1-2", "9-10"]


def test_positions_outside_the_posted_tasks_are_refused() -> None:
    for positions in ([], [3], [-1]):
        with pytest.raises(ValueError, match="do not name tasks"):
            rerender_payload(
                posted(), positions, attempt=1, first_jid="1", submission_id="k", on_demand=False
            )


def test_an_untagged_title_is_left_as_it_is() -> None:
    assert untagged_title("shot [pc-0123456789]") == "shot"
    assert untagged_title("shot [pc-short]") == "shot [pc-short]"
    assert untagged_title("shot") == "shot"


def test_failed_and_preempted_tasks_are_chosen_and_a_fresh_look_drops_those_taken_up_again() -> (
    None
):
    first = [
        state("000", "1-2", TaskStatus.SUCCESS),
        state("001", "5-6", TaskStatus.FAILED),
        state("002", "9-10", TaskStatus.PREEMPTED),
        state("003", "11", TaskStatus.KILLED),
    ]
    chosen = to_rerender(first)
    assert [s.tid for s in chosen] == ["001", "002"]
    fresh = [*first[:2], state("002", "9-10", TaskStatus.RUNNING), first[3]]
    assert [s.tid for s in still_to_rerender(chosen, fresh)] == ["001"]


def test_the_ledger_follows_each_task_to_its_latest_attempt() -> None:
    ledger = Ledger("00002", 3)
    ledger.record(
        "00002",
        [
            state("000", "1-2", TaskStatus.SUCCESS),
            state("001", "5-6", TaskStatus.FAILED),
            state("002", "9-10", TaskStatus.PREEMPTED),
        ],
        [0, 1, 2],
        {"000": 1800.0, "001": 1800.0, "002": 3600.0},
    )
    assert ledger.positions_to_rerender() == [1, 2]
    ledger.record(
        "00004",
        [state("000", "5-6", TaskStatus.FAILED), state("001", "9-10", TaskStatus.SUCCESS)],
        [1, 2],
    )
    assert ledger.positions_to_rerender() == [1]
    ledger.record(
        "00004",
        [state("000", "5-6", TaskStatus.FAILED), state("001", "9-10", TaskStatus.SUCCESS)],
        [1, 2],
    )
    assert [a.jid for a in ledger.attempts] == ["00002", "00004"]  # followed again, not added
    assert [s.frames for s in ledger.latest_states()] == ["1-2", "5-6", "9-10"]
    assert ledger.unrendered() == [("00004", state("000", "5-6", TaskStatus.FAILED))]
    rows = [a.row() for a in ledger.attempts]
    assert rows[0] == {
        "job": "00002",
        "attempt": "first",
        "frames": "1-2,5-6,9-10",
        "outcome": "1 of 3 rendered; failed: 5-6; preempted: 9-10",
        "instance_hours": "2.000",
    }
    assert rows[1]["attempt"] == "re-render 1" and rows[1]["instance_hours"] == ""
    line = ledger.failure_line()
    assert "\n" not in line
    assert line.startswith("frames 5-6 did not render in 2 attempts (jobs 00002, 00004;")
    assert "failed in job 00004 task 000" in line


def test_a_listing_naming_a_task_never_posted_is_refused() -> None:
    ledger = Ledger("00002", 3)
    with pytest.raises(ServiceError, match="task '001', which the job was not posted with"):
        ledger.record("00004", [state("001", "5-6", TaskStatus.SUCCESS)], [1])
