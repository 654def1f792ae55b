"""The ``download-outputs`` flow on Prefect's local backend against the sandbox: it downloads,
emits ``conductor.outputs.downloaded`` for the job (read back from the API's event feed), and
fails with one line when tasks failed or frames are missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.flows.download_outputs import EVENT, download_outputs
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.eventually import eventually
from tests.test_job_outputs import EXPECTED, SAVE_AS, finished, scene, submit


@pytest.fixture
def client(conductor_env: SandboxHandle, tmp_path: Path) -> Iterator[ConductorClient]:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=10)
    with ConductorClient(token_cache_dir=tmp_path / "tokens", policy=policy) as made:
        yield made


def read_event(jid: str, event_id: str) -> dict[str, object]:
    """The event ``event_id`` (named EVENT, about this job) once the API's feed has it."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    wanted = EventFilter(
        event=EventNameFilter(name=[EVENT]),
        resource=EventResourceFilter(id=[f"conductor.job.{jid}"]),
    )
    with get_client(sync_client=True) as api:

        def found() -> list[dict[str, object]]:
            page = api.read_events(filter=wanted, limit=50)  # the server caps it at 50
            return [e.model_dump(mode="json") for e in page.events if str(e.id) == event_id]

        return eventually(found, what=f"the {EVENT} event", timeout=60, interval=0.5)[0]


def latest_progress() -> float | None:
    """The newest value of the run's ``download-progress`` artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as api:
        found = api.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["download-progress"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return float(found[0].data) if found else None  # type: ignore[arg-type]


def test_the_flow_downloads_and_emits_the_event(
    prefect_backend: None, client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(client, conductor_env)
    finished(client, jid)
    scene_file = tmp_path / "scene_export.json"
    scene_file.write_text(json.dumps(scene().model_dump()))
    result = download_outputs(
        jid=jid, output_folder=str(tmp_path / "out"), scene_export=str(scene_file)
    )
    assert result["files"] == len(EXPECTED)
    assert result["output_folder"] == str(tmp_path / "out" / jid)
    assert result["frames"]["beauty"] == {"expected": 5, "found": 5, "frames": "1-5"}
    assert result["event_id"]
    progress = latest_progress()
    assert progress == 100.0
    event = read_event(jid, result["event_id"])
    payload = event["payload"]
    assert isinstance(payload, dict) and payload["output_folder"] == result["output_folder"]


def test_the_flow_fails_in_one_line_for_missing_frames(
    prefect_backend: None, client: ConductorClient, conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    jid = submit(
        client, conductor_env, save_as={"project://scene/beauty": SAVE_AS["project://scene/beauty"]}
    )
    finished(client, jid)
    scene_file = tmp_path / "scene_export.json"
    scene_file.write_text(json.dumps(scene().model_dump()))
    state = download_outputs(
        jid=jid,
        output_folder=str(tmp_path / "out"),
        scene_export=str(scene_file),
        return_state=True,
    )
    assert state.is_failed()
    assert state.message is not None and "\n" not in state.message
    assert "shadow: missing 1-5 of 1-5" in state.message


def test_a_bad_job_id_fails_the_flow_in_one_line(prefect_backend: None) -> None:
    state = download_outputs(jid="12ab", return_state=True)
    assert state.is_failed()
    assert state.message is not None
    assert "jid: '12ab' is not a Conductor job id" in state.message
