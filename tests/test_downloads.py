"""Downloading outputs from signed URLs over real HTTP on loopback: skip, verify, resume, refuse."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.transfers.downloads import (
    DownloadError,
    DownloadFile,
    DownloadTask,
    UnsafeDownloadPath,
    download_tasks,
    target_path,
    task_folder,
)
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache


def md5_of(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class Storage:
    """A signed-URL host: serves named blobs; can drop a connection mid-file or send wrong bytes."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        storage = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.split("?")[0].lstrip("/")
                storage.requests.append((name, dict(self.headers)))
                data = storage.blobs.get(name)
                if data is None:
                    self.send_error(404)
                    return
                queued = storage.faults.get(name) or []
                fault = queued.pop(0) if queued else ""
                if fault == "500":
                    self.send_error(500)
                    return
                body = bytes(reversed(data)) if fault == "wrong_bytes" else data
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "drop":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name: str, data: bytes) -> DownloadFile:
        self.blobs[name] = data
        return DownloadFile(
            url=f"{self.url}/{name}?Signature=s3cr3t",
            md5=md5_of(data),
            relative_path=name,
            size=len(data),
        )

    def fetched(self) -> list[str]:
        return [name for name, _ in self.requests]


@pytest.fixture
def storage() -> Iterator[Storage]:
    host = Storage()
    yield host
    host.server.shutdown()


def job(storage: Storage, files: dict[str, bytes], tid: str = "000") -> DownloadTask:
    return DownloadTask(
        download_id=f"d{tid}",
        job_id="00042",
        task_id=tid,
        output_dir="/nowhere",
        files=tuple(storage.add(name, data) for name, data in files.items()),
    )


FRAMES = {f"beauty/beauty.{n:04d}.exr": bytes([n]) * (1000 + n) for n in range(1, 6)}


def test_every_file_lands_verified_and_a_second_run_fetches_nothing(
    storage: Storage, tmp_path: Path
) -> None:
    cache = Md5Cache(tmp_path / "md5.sqlite")
    task = job(storage, FRAMES)
    done: list[str] = []
    stats = download_tasks(
        [task], output=tmp_path / "out", cache=cache, on_task_done=lambda t: done.append(t.task_id)
    )
    for name, data in FRAMES.items():
        assert (tmp_path / "out" / "00042" / name).read_bytes() == data
    assert (stats.files_done, stats.bytes_fetched, done) == (
        5,
        sum(map(len, FRAMES.values())),
        ["000"],
    )
    assert not any("Authorization" in headers for _, headers in storage.requests)
    again = download_tasks([task], output=tmp_path / "out", cache=cache)
    assert (again.files_skipped, again.bytes_fetched) == (5, 0)
    assert len(storage.requests) == 5


def test_a_dropped_connection_fetches_the_file_again(storage: Storage, tmp_path: Path) -> None:
    task = job(storage, FRAMES)
    storage.faults["beauty/beauty.0003.exr"] = ["drop"]
    stats = download_tasks([task], output=tmp_path)
    assert (tmp_path / "00042/beauty/beauty.0003.exr").read_bytes() == FRAMES[
        "beauty/beauty.0003.exr"
    ]
    assert stats.refetched == 1 and storage.fetched().count("beauty/beauty.0003.exr") == 2


def test_wrong_bytes_are_refetched_and_never_kept(storage: Storage, tmp_path: Path) -> None:
    task = job(storage, FRAMES)
    storage.faults["beauty/beauty.0002.exr"] = ["wrong_bytes"]
    download_tasks([task], output=tmp_path)
    assert (tmp_path / "00042/beauty/beauty.0002.exr").read_bytes() == FRAMES[
        "beauty/beauty.0002.exr"
    ]


def test_a_file_that_stays_wrong_fails_in_one_line_and_leaves_no_file(
    storage: Storage, tmp_path: Path
) -> None:
    task = job(storage, {"a.exr": bytes(range(256)) * 20})
    storage.faults["a.exr"] = ["wrong_bytes"] * 3
    with pytest.raises(DownloadError) as caught:
        download_tasks([task], output=tmp_path, attempts=3)
    message = str(caught.value)
    assert message.startswith(f"download of {tmp_path / '00042' / 'a.exr'} failed after 3 attempts")
    assert "does not match" in message and "\n" not in message and "s3cr3t" not in message
    assert list((tmp_path / "00042").iterdir()) == []


def test_a_killed_download_leaves_no_half_file_and_resumes(
    storage: Storage, tmp_path: Path
) -> None:
    task = job(storage, FRAMES)
    storage.faults["beauty/beauty.0004.exr"] = ["drop"]
    with pytest.raises(DownloadError):
        download_tasks([task], output=tmp_path, attempts=1, workers=1)
    final = tmp_path / "00042/beauty/beauty.0004.exr"
    assert not final.exists()
    complete = sorted(p.name for p in final.parent.iterdir() if not p.name.startswith("."))
    before = len(storage.requests)
    stats = download_tasks([task], output=tmp_path, cache=Md5Cache(tmp_path / "md5.sqlite"))
    assert stats.files_skipped == len(complete)
    assert len(storage.requests) - before == 5 - len(complete)
    assert final.read_bytes() == FRAMES["beauty/beauty.0004.exr"]


def test_a_storage_error_is_retried_then_named(storage: Storage, tmp_path: Path) -> None:
    task = job(storage, {"b.exr": b"B" * 10})
    storage.faults["b.exr"] = ["500", "500"]
    with pytest.raises(
        DownloadError, match=r"b\.exr failed after 2 attempts: the storage host answered HTTP 500"
    ):
        download_tasks([task], output=tmp_path, attempts=2)


@pytest.mark.parametrize("relative", ["../escape.exr", "/etc/passwd", "a/../../b.exr", "C:/x.exr"])
def test_paths_outside_the_output_folder_are_refused(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafeDownloadPath, match="outside the output folder"):
        target_path(tmp_path, relative)


@pytest.mark.parametrize(
    ("output_dir", "output", "expected"),
    [
        ("/shows/s1/renders", None, "/shows/s1/renders"),
        ("/shows/s1/renders", "/local", "/local/00042"),
        ("C:\\shows\\renders", None, "{home}/CONDUCTOR_DOWNLOADS/00042"),
        ("", None, "{home}/CONDUCTOR_DOWNLOADS/00042"),
    ],
)
def test_task_folders_follow_the_reference_downloader(
    tmp_path: Path, output_dir: str, output: str | None, expected: str
) -> None:
    task = DownloadTask("d", "00042", "000", output_dir, ())
    folder = task_folder(task, Path(output) if output else None, home=tmp_path)
    assert folder == Path(expected.format(home=tmp_path))
