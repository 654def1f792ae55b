"""Uploads against the sandbox over real HTTP: dedupe, multipart, faults, integrity, no leaks."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.uploads import UploadProgress, upload_files
from prefect_conductor.sandbox.handle import SandboxHandle

FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.2, deadline=20)


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def make_files(folder: Path, count: int, size: int = 3000) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"asset.{n:04d}.bin"
        path.write_bytes(os.urandom(size))
        paths.append(path)
    return paths


def client_for(sandbox: SandboxHandle, tmp_path: Path) -> ConductorClient:
    return ConductorClient(
        sandbox.url,
        ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tok",
        policy=FAST,
    )


def test_upload_then_resubmit_hashes_and_uploads_nothing(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "assets", 45)
    cache = Md5Cache(tmp_path / "md5.sqlite")
    seen: list[UploadProgress] = []
    with client_for(sandbox, tmp_path) as client:
        first = upload_files(
            client, files, project="default", cache=cache, storage_policy=FAST, progress=seen.append
        )
        second = upload_files(client, files, project="default", cache=cache, storage_policy=FAST)
    assert first.files_uploaded == 45 and first.bytes_uploaded == 45 * 3000
    assert second.bytes_hashed == 0 and second.files_uploaded == 0 and second.bytes_uploaded == 0
    stored = sandbox.uploads()
    assert {b64md5(p.read_bytes()) for p in files} == set(stored)
    assert sandbox.state()["bearer_on_storage"] == 0  # the Conductor token never goes to storage
    assert seen and seen[-1].bytes_uploaded == seen[-1].bytes_to_upload == 45 * 3000
    batches = [
        r for r in sandbox.state()["requests"] if r["path"] == "/api/v2/files/get_upload_urls"
    ]
    assert len(batches) >= 3  # batched by 20, per run


def test_multipart_in_parallel_parts(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.config(multipart_threshold=100_000, part_size=64 * 1024)
    big = make_files(tmp_path / "big", 2, size=1_000_000)
    with client_for(sandbox, tmp_path) as client:
        result = upload_files(
            client,
            big,
            project="default",
            cache=Md5Cache(tmp_path / "m.sqlite"),
            storage_policy=FAST,
        )
    assert result.files_uploaded == 2
    assert sandbox.uploads() == {b64md5(p.read_bytes()): 1_000_000 for p in big}
    completions = [
        r for r in sandbox.state()["requests"] if r["path"] == "/api/v2/files/multipart/complete"
    ]
    assert len(completions) == 2


@pytest.mark.parametrize(
    "rule",
    [
        {
            "method": "PUT",
            "path": "/_storage/*",
            "action": "status",
            "status": 503,
            "retry_after": 0,
            "times": 3,
        },
        {"method": "PUT", "path": "/_storage/*", "action": "drop_before", "times": 2},
        {"method": "PUT", "path": "/_storage/*", "action": "drop_after", "times": 2},
        {
            "method": "POST",
            "path": "/api/v2/files/get_upload_urls",
            "action": "status",
            "status": 502,
            "retry_after": 0,
            "times": 2,
        },
    ],
    ids=["storage-503", "storage-drop-before", "storage-drop-after", "urls-502"],
)
def test_storage_faults_are_recovered(
    sandbox: SandboxHandle, tmp_path: Path, rule: dict[str, object]
) -> None:
    files = make_files(tmp_path / "f", 6)
    sandbox.faults(rule)
    with client_for(sandbox, tmp_path) as client:
        upload_files(
            client,
            files,
            project="default",
            cache=Md5Cache(tmp_path / "c.sqlite"),
            storage_policy=FAST,
        )
    assert set(sandbox.uploads()) == {b64md5(p.read_bytes()) for p in files}


def test_a_part_failing_halfway_is_retried(sandbox: SandboxHandle, tmp_path: Path) -> None:
    sandbox.config(multipart_threshold=10_000, part_size=16_384)
    sandbox.faults({"method": "PUT", "path": "/_storage/*", "action": "drop_after", "times": 3})
    big = make_files(tmp_path / "b", 1, size=100_000)
    with client_for(sandbox, tmp_path) as client:
        upload_files(
            client,
            big,
            project="default",
            cache=Md5Cache(tmp_path / "c.sqlite"),
            storage_policy=FAST,
        )
    assert sandbox.uploads() == {b64md5(big[0].read_bytes()): 100_000}


def test_a_vanished_file_is_named(sandbox: SandboxHandle, tmp_path: Path) -> None:
    missing = tmp_path / "gone.bin"
    with client_for(sandbox, tmp_path) as client, pytest.raises(UserError, match="gone.bin"):
        upload_files(client, [missing], project="default", cache=Md5Cache(tmp_path / "c.sqlite"))
