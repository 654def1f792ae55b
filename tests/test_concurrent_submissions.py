"""Concurrent runs with one submission key make one scout job and one full job.

Four ``prefect-conductor submit --submission-key K`` processes start at once against one real
Prefect server while the sandbox takes a second to answer ``POST jobs/``: without a lock shared
through Prefect around the record of what was posted, several of them read "nothing posted"
before any has posted, and each posts its own job. Two keys post two submissions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.tasks.submission_lock import LOCK_PREFIX, lock_name
from tests.cli_submits import submit_at_once

RUNS = 4
JOB_LINE = re.compile(r"^(scout|full) job (\S+): ", re.MULTILINE)


def test_lock_names_are_stable_and_bounded() -> None:
    names = {lock_name(f"key-{n}:scout", 8) for n in range(200)}
    assert names == {f"{LOCK_PREFIX}{n}" for n in range(8)}
    assert lock_name("click-7:scout", 64) == lock_name("click-7:scout", 64)


@pytest.mark.e2e
def test_four_concurrent_runs_with_one_key_make_one_scout_and_one_full_job(
    prefect_server: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(
        {"method": "POST", "path": "/jobs/", "action": "delay", "seconds": 1.0, "times": 0}
    )
    outputs = [
        dict(JOB_LINE.findall(out))
        for out in submit_at_once(prefect_server, sandbox, tmp_path, ["same-click"] * RUNS)
    ]
    jobs = sandbox.jobs()
    assert [len(job["tasks_data"]) for job in jobs] == [2, 3]  # one scout job, one full job
    expected = {"scout": jobs[0]["jid"], "full": jobs[1]["jid"]}
    assert outputs == [expected] * RUNS  # every run prints the same two jobs
    posts = [
        r for r in sandbox.state()["requests"] if r["method"] == "POST" and r["path"] == "/jobs/"
    ]
    assert len(posts) == 2
    limits = httpx.post(f"{prefect_server}/v2/concurrency_limits/filter", json={}).json()
    ours = [limit for limit in limits if limit["name"].startswith(LOCK_PREFIX)]
    assert ours and all(limit["limit"] == 1 for limit in ours)
    assert all(limit["active_slots"] == 0 for limit in ours)  # every run let go


@pytest.mark.e2e
def test_two_submissions_with_different_keys_both_post(
    prefect_server: str, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    """The sandbox's listings show no metadata, as a real account's do: a second submission is
    never refused because the first one's job cannot show its submission id."""
    outputs = [
        dict(JOB_LINE.findall(out))
        for out in submit_at_once(prefect_server, sandbox, tmp_path, ["key-a", "key-b"])
    ]
    jobs = sandbox.jobs()
    assert len(jobs) == 4 and len({job["jid"] for job in jobs}) == 4
    assert {jid for out in outputs for jid in out.values()} == {job["jid"] for job in jobs}
    posts = [
        r for r in sandbox.state()["requests"] if r["method"] == "POST" and r["path"] == "/jobs/"
    ]
    assert len(posts) == 4


@pytest.mark.usefixtures("prefect_backend")
def test_a_held_lock_makes_the_next_run_wait_then_fail_in_one_retryable_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from prefect_conductor.conductor_cloud.errors import is_transient
    from prefect_conductor.tasks.submission_lock import SubmissionLockError, submission_lock

    generous = os.environ["PREFECT_CONDUCTOR_SUBMIT_LOCK_WAIT_SECONDS"]  # tests/conftest.py
    monkeypatch.setenv("PREFECT_CONDUCTOR_SUBMIT_LOCK_BUCKETS", "1")
    with submission_lock("held:scout") as name:  # a free limit: taken however slow the server
        with get_client(sync_client=True) as client:
            assert client.read_global_concurrency_limit_by_name(name).active_slots == 1
        monkeypatch.setenv("PREFECT_CONDUCTOR_SUBMIT_LOCK_WAIT_SECONDS", "1")
        with pytest.raises(SubmissionLockError) as waited, submission_lock("other:scout"):
            pass  # one bucket: the other id waits for the same limit
    assert is_transient(waited.value) and "\n" not in str(waited.value)
    assert f"Prefect concurrency limit {name} stayed taken for 1 s" in str(waited.value)
    monkeypatch.setenv("PREFECT_CONDUCTOR_SUBMIT_LOCK_WAIT_SECONDS", generous)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=5))
        with submission_lock("held:scout"):
            limit = client.read_global_concurrency_limit_by_name(name)
            assert (limit.limit, limit.active_slots) == (1, 1)  # put back to one holder
        assert client.read_global_concurrency_limit_by_name(name).active_slots == 0
