"""``wait``, ``status`` and ``download`` share their exit codes for the same outcomes: 0 every task
rendered, 4 some did not (failed, killed or left preempted), 5 time ran out, 2 a bad job id; each
outcome that is not 0 says so in one line. The console entry point runs in-process against the
sandbox over real HTTP."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_conductor.cli.main import main
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.test_job_outputs import submit


@pytest.fixture
def client(conductor_env: SandboxHandle, tmp_path: Path) -> Iterator[ConductorClient]:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)
    with ConductorClient(token_cache_dir=tmp_path / "tokens", policy=policy) as made:
        yield made


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[str], list[str]]:
    """The console entry point with ``args``: its exit code, stdout and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["prefect-conductor", *args])
    with pytest.raises(SystemExit) as ended:
        main()
    out = capsys.readouterr()
    code = ended.value.code
    return (code if isinstance(code, int) else 1), out.out.splitlines(), out.err.splitlines()


def test_wait_exits_0_when_every_task_rendered(
    client: ConductorClient,
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conductor_env.config(task_seconds=0.05)
    jid = submit(client, conductor_env)
    code, out, err = run(monkeypatch, capsys, "wait", jid, "--poll-seconds", "0.05")
    assert (code, out) == (0, [f"job {jid}: all 3 tasks rendered"])
    assert err[-1] == f"job {jid}: 3 of 3 tasks settled"
    assert run(monkeypatch, capsys, "status", jid)[0] == 0


def test_failed_tasks_exit_4_from_wait_status_and_download(
    client: ConductorClient,
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    conductor_env.config(task_seconds=0.05, fail_frames=[5])
    jid = submit(client, conductor_env)
    line = f"job {jid}: 1 of 3 tasks did not render: 002 failed (frames 5)"
    code, out, err = run(monkeypatch, capsys, "wait", jid, "--poll-seconds", "0.05")
    assert (code, out, err[-1]) == (4, [], f"error: {line}")
    code, _, err = run(monkeypatch, capsys, "status", jid)
    assert (code, err[0]) == (4, f"error: {line}")
    code, _, err = run(monkeypatch, capsys, "download", jid, "--output", str(tmp_path / "out"))
    assert (
        code == 4 and f"error: {line}" in err
    )  # after the progress bar, the rendered tasks' files


def test_a_task_left_preempted_exits_4_naming_it(
    client: ConductorClient,
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    conductor_env.config(task_seconds=0.05, preempt_frames=[3])
    jid = submit(client, conductor_env)
    code, _, err = run(monkeypatch, capsys, "wait", jid, "--poll-seconds", "0.05")
    assert (code, err[-1]) == (
        4,
        f"error: job {jid}: 1 of 3 tasks did not render: 001 preempted (frames 3-4)",
    )


def test_time_running_out_exits_5_from_wait_and_download(
    client: ConductorClient,
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    conductor_env.config(task_seconds=600)
    jid = submit(client, conductor_env)
    line = f"error: job {jid}: 3 of 3 tasks not finished (pending); run again when they are"
    code, out, err = run(
        monkeypatch, capsys, "wait", jid, "--timeout", "0.2", "--poll-seconds", "0.05"
    )
    assert (code, out, err[-1]) == (5, [], line)
    assert err[0] == f"job {jid}: 0 of 3 tasks settled"
    code, _, err = run(
        monkeypatch, capsys, "download", jid, "--wait", "0.1", "--poll-seconds", "0.05",
        "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert (code, err[-1]) == (5, line)


def test_a_bad_or_unknown_job_id_is_a_user_error_in_one_line(
    client: ConductorClient,
    conductor_env: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(monkeypatch, capsys, "wait", "12x") == (
        2,
        [],
        ["error: JID: '12x' is not a Conductor job id (digits, e.g. 00042)"],
    )
    assert run(monkeypatch, capsys, "wait", "99") == (
        2,
        [],
        ["error: JID: Conductor lists no job 00099 for this account (check the job id)"],
    )
