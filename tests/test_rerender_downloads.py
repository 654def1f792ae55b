"""A re-render job's frames come down beside its first job's, and its failed tasks are the
caller's to render again: ``fetch_outputs(folder_jid=, failed_ok=)`` against the sandbox."""

from __future__ import annotations

from pathlib import Path

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.status import TaskStatus
from prefect_conductor.conductor_cloud.transfers.job_outputs import fetch_outputs
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.test_job_outputs import EXPECTED, client, on_disk, submit  # noqa: F401 - a fixture


def test_a_second_jobs_files_land_in_the_first_jobs_folder_and_failures_raise_nothing(
    client: ConductorClient,  # noqa: F811 - the fixture imported above
    conductor_env: SandboxHandle,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    first = submit(client, conductor_env)
    conductor_env.config(fail_frames=[3])
    second = submit(client, conductor_env)
    result = fetch_outputs(
        client,
        second,
        out,
        wait_seconds=30,
        poll_seconds=0.05,
        folder_jid=first,
        failed_ok=True,
    )
    assert [s.status is TaskStatus.FAILED for s in result.states] == [False, True, False]
    assert result.download.folder == out / first
    assert sorted(on_disk(out / first)) == [
        p for p in EXPECTED if not any(f".000{n}." in p for n in (3, 4))
    ]
    assert not (out / second).exists()
