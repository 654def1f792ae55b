"""Status words: the evidenced vocabulary, an UNKNOWN fallback that never finishes a wait, and
the scout wait's one-line message naming the job, a task and the word seen."""

from __future__ import annotations

import pytest

from prefect_conductor.conductor_cloud.api.status import JobStatus, TaskStatus
from prefect_conductor.tasks.submit import _unfinished


@pytest.mark.parametrize(
    ("word", "finished", "succeeded"),
    [
        ("pending", False, False),
        ("holding", False, False),
        ("running", False, False),
        ("preempted", False, False),
        ("success", True, True),
        ("downloaded", True, True),
        ("Downloaded ", True, True),
        ("failed", True, False),
        ("killed", True, False),
        ("rendering", False, False),
        (None, False, False),
    ],
)
def test_task_words(word: object, finished: bool, succeeded: bool) -> None:
    status = TaskStatus.parse(word)
    assert (status.finished, status.succeeded) == (finished, succeeded)


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
