"""Status words: the evidenced vocabulary, an UNKNOWN fallback that never finishes a wait, and
the scout wait's one-line message naming the job, a task and the word seen."""

from __future__ import annotations

import pytest

from prefect_conductor.conductor_cloud.api.status import (
    JobStatus,
    TaskStatus,
    job_status_from_tasks,
)
from prefect_conductor.tasks.submit import _unfinished


@pytest.mark.parametrize(
    ("word", "finished", "succeeded", "not_rendered"),
    [
        ("pending", False, False, False),
        ("holding", False, False, False),
        ("running", False, False, False),
        ("preempted", True, False, True),
        ("success", True, True, False),
        ("downloaded", True, True, False),
        ("Downloaded ", True, True, False),
        ("failed", True, False, True),
        ("killed", True, False, True),
        ("rendering", False, False, False),
        (None, False, False, False),
    ],
)
def test_task_words(word: object, finished: bool, succeeded: bool, not_rendered: bool) -> None:
    status = TaskStatus.parse(word)
    assert (status.finished, status.succeeded, status.not_rendered) == (
        finished,
        succeeded,
        not_rendered,
    )


@pytest.mark.parametrize(
    ("words", "job"),
    [
        (["success", "preempted"], "preempted"),
        (["preempted", "failed"], "failed"),
        (["preempted", "killed"], "killed"),
        (["downloaded", "preempted"], "preempted"),
        (["running", "preempted"], "running"),
        (["pending", "preempted"], "pending"),
        (["success", "downloaded"], "success"),
    ],
)
def test_a_job_is_preempted_when_its_settled_tasks_hold_a_preempted_one_and_none_failed(
    words: list[str], job: str
) -> None:
    assert str(job_status_from_tasks([TaskStatus.parse(w) for w in words])) == job


def test_an_unlisted_word_is_unknown_and_unfinished() -> None:
    assert TaskStatus.parse("rendering") is TaskStatus.UNKNOWN
    assert JobStatus.parse("archived") is JobStatus.UNKNOWN and not JobStatus.UNKNOWN.finished
    assert JobStatus.parse("syncing") is JobStatus.SYNCING and not JobStatus.SYNCING.finished
    assert JobStatus.parse("downloaded").finished


def test_the_timeout_line_names_the_job_and_the_word_its_listing_shows() -> None:
    line = _unfinished("00042", "rendering", 60)
    assert line == (
        "scout job 00042 did not finish in 60 minutes: the job is still 'rendering';"
        " nothing more was submitted"
    )
