"""Protocol details as Conductor's own client has them: the API host of task listings, upload
paths a render node can mount, and an optional extra-environment call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient, NotFoundError
from prefect_conductor.conductor_cloud.api.refresh import fetch_catalog
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.job.paths import mount_problem
from prefect_conductor.conductor_cloud.settings import (
    DEFAULT_API_URL,
    DEFAULT_CONDUCTOR_URL,
    get_settings,
)
from prefect_conductor.conductor_cloud.transfers.upload_roots import UploadRefused, check_uploadable
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.fake_conductor import CLIENT_ID, PRIVATE_KEY, URL, FakeConductor


def client_for(fake: FakeConductor, tmp_path: Path, url: str = URL, **kwargs: str) -> Any:
    return ConductorClient(
        url,
        ApiKey(CLIENT_ID, PRIVATE_KEY),
        token_cache_dir=tmp_path / "tokens",
        transport=fake.transport(),
        sleep=lambda _seconds: None,
        **kwargs,
    )


def test_the_api_host_is_conductors_for_its_dashboard_and_the_address_itself_otherwise() -> None:
    settings = get_settings()
    assert settings.api_address(DEFAULT_CONDUCTOR_URL) == DEFAULT_API_URL
    assert settings.api_address("http://127.0.0.1:8765") == "http://127.0.0.1:8765"


def test_the_api_host_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_API_URL", "https://api.studio.test/")
    assert get_settings().api_address(DEFAULT_CONDUCTOR_URL) == "https://api.studio.test"


def test_task_listings_go_to_the_api_host_and_job_listings_to_the_dashboard(
    tmp_path: Path,
) -> None:
    fake = FakeConductor()
    fake.jobs = [{"jid": "00042", "status": "running"}]
    fake.tasks = [{"jobLabel": "00042", "taskLabel": "000", "status": "running"}]
    with client_for(fake, tmp_path, DEFAULT_CONDUCTOR_URL) as client:
        assert client.get_job("42")["status"] == "running"
        assert [t["taskLabel"] for t in client.get_tasks("42")] == ["000"]
    hosts = {r.url.path: r.url.host for r in fake.requests}
    assert hosts["/api/v1/tasks"] == "api.conductortech.com"
    assert hosts["/api/v1/jobs"] == "dashboard.conductortech.com"


def test_a_404_on_the_task_listing_names_the_setting_in_one_line(tmp_path: Path) -> None:
    fake = FakeConductor(missing_hosts={"wrong.example.test"})
    with (
        client_for(fake, tmp_path, api_url="https://wrong.example.test") as client,
        pytest.raises(NotFoundError) as caught,
    ):
        client.get_tasks("42")
    message = str(caught.value)
    assert "PREFECT_CONDUCTOR_API_URL" in message and "https://wrong.example.test" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("C:\\proj\\a.tx", None),
        ("c:/proj/shot 010/a.tx", None),
        ("\\\\server\\share\\a.tx", None),
        ("/mnt/proj/a.tx", None),
        ("C:\\proj\\take:2\\a.tx", "holds ':' after the drive"),
        ("/mnt/proj/a:b.tx", "holds ':' after the drive"),
        ("proj/a.tx", "is not an absolute path"),
    ],
)
def test_paths_a_render_node_cannot_mount_are_named(path: str, problem: str | None) -> None:
    found = mount_problem(path)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_dependency_with_a_colon_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "take:2"
    folder.mkdir()
    (folder / "a.tx").write_text("x")
    with pytest.raises(UploadRefused) as caught:
        check_uploadable([folder / "a.tx"], str(tmp_path / "shot.project"))
    assert str(caught.value) == (
        f"uploads: {folder / 'a.tx'}: holds ':' after the drive, which a render node cannot mount"
    )


def test_a_failing_extra_environment_leaves_the_rest_of_the_catalogue(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.faults(
        {
            "method": "GET",
            "path": "/api/v1/integrations/env-vars-configs",
            "action": "status",
            "status": 500,
            "times": 0,
        }
    )
    with ConductorClient(
        sandbox.url,
        ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tokens",
        policy=RetryPolicy(attempts=1, base_delay=0.01, max_delay=0.01),
    ) as client:
        catalog = fetch_catalog(client)
    assert catalog.projects and catalog.instance_types
    assert not catalog.extra_environment
