"""The task clock: durations from looks at the task listing, and how precise they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.api.task_clock import TaskClock

P, R, S, F = TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCESS, TaskStatus.FAILED


def test_a_task_seen_running_then_finished_took_the_time_between_those_looks() -> None:
    clock = TaskClock()
    clock.observe([("000", P), ("001", P)], now=100.0)
    clock.observe([("000", R), ("001", P)], now=110.0)
    clock.observe([("000", R), ("001", R)], now=120.0)
    clock.observe([("000", S), ("001", F)], now=135.0)
    assert clock.durations() == {"000": 25.0, "001": 15.0}
    assert clock.resolution == 15.0


def test_a_task_that_started_and_ended_between_two_looks_counts_from_the_earlier_look() -> None:
    clock = TaskClock()
    clock.observe([("000", P)], now=10.0)
    clock.observe([("000", S)], now=40.0)
    assert clock.seconds("000") == 30.0
    assert clock.resolution == 30.0


def test_an_unfinished_task_has_no_duration_yet() -> None:
    clock = TaskClock()
    clock.observe([("000", R)], now=1.0)
    clock.observe([("000", R)], now=2.0)
    assert clock.seconds("000") is None
    assert clock.durations() == {}


def test_the_clock_survives_a_round_trip_and_a_malformed_copy_reads_empty() -> None:
    clock = TaskClock()
    clock.observe([("000", R)], now=5.0)
    clock.observe([("000", S)], now=9.0)
    again = TaskClock.from_dict(clock.to_dict())
    assert again == clock
    assert TaskClock.from_dict({"started": "nonsense"}) == TaskClock()


def test_a_clock_written_by_one_process_is_read_back_by_another(tmp_path: Path) -> None:
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore

    from prefect_conductor.tasks.task_clocks import ClockRecords

    def store() -> ResultStore:
        return ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)))

    clock = TaskClock()
    clock.observe([("000", R)], now=5.0)
    clock.observe([("000", S)], now=9.0)
    assert ClockRecords(store()).read("00042") == TaskClock()
    ClockRecords(store()).write("00042", clock)
    assert ClockRecords(store()).read("00042") == clock
    assert ClockRecords(store()).read("00043") == TaskClock()
    with pytest.raises(ValueError):
        ClockRecords(store()).read("../x")


def test_a_task_already_running_at_the_first_look_is_not_timed() -> None:
    clock = TaskClock()
    clock.observe([("000", TaskStatus.RUNNING), ("001", TaskStatus.PENDING)], 10.0)
    clock.observe([("000", TaskStatus.SUCCESS), ("001", TaskStatus.RUNNING)], 12.0)
    clock.observe([("000", TaskStatus.SUCCESS), ("001", TaskStatus.SUCCESS)], 15.0)
    assert clock.durations() == {"000": 2.0, "001": 3.0}  # 000's is a lower bound only
    assert clock.timed() == {"001": 3.0}
    assert TaskClock.from_dict(clock.to_dict()).timed() == {"001": 3.0}
