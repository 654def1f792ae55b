"""Downloads against a hostile output folder and a hostile server: nothing outside is written.

A planted link never redirects a write, a folder name never comes from the server's record, an
endless listing or body stops, and a bad argument ends in one line naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient, ServerError
from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.transfers.downloads import (
    DownloadError,
    DownloadFile,
    DownloadTask,
    UnsafeDownloadPath,
    download_tasks,
    task_folder,
)
from prefect_conductor.conductor_cloud.transfers.job_outputs import job_id
from prefect_conductor.conductor_cloud.transfers.safe_files import UnsafeFolder
from prefect_conductor.conductor_cloud.transfers.task_downloads import listed_downloads
from tests.fake_conductor import CLIENT_ID, PRIVATE_KEY, URL, FakeConductor
from tests.test_downloads import Storage, md5_of

FRAME = b"frame bytes " * 100


@pytest.fixture
def storage() -> Iterator[Storage]:
    host = Storage()
    yield host
    host.server.shutdown()


def one_file(storage: Storage, relative: str = "beauty/f.exr", jid: str = "00042") -> DownloadTask:
    item = storage.add("f.exr", FRAME)
    item = DownloadFile(item.url, item.md5, relative, item.size)
    return DownloadTask("d0", jid, "000", "/nowhere", (item,))


def test_a_planted_partial_link_and_a_link_at_the_final_name_are_never_written_through(
    storage: Storage, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "out" / "00042" / "beauty"
    folder.mkdir(parents=True)
    (folder / ".f.exr.part").symlink_to(victim)
    (folder / "f.exr").symlink_to(victim)
    download_tasks([one_file(storage)], output=tmp_path / "out")
    assert victim.read_text() == "precious"
    assert not (folder / "f.exr").is_symlink()
    assert (folder / "f.exr").read_bytes() == FRAME
    assert (folder / ".f.exr.part").is_symlink()  # left alone, never opened
    assert sorted(p.name for p in folder.iterdir()) == [".f.exr.part", "f.exr"]


@pytest.mark.parametrize("linked", ["00042", "00042/beauty"])
def test_a_linked_subfolder_is_refused_and_nothing_lands_where_it_points(
    storage: Storage, tmp_path: Path, linked: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "out" / linked
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UnsafeFolder) as caught:
        download_tasks([one_file(storage)], output=tmp_path / "out")
    assert str(caught.value) == f"download: {link} is a link or not a folder; refused"
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("relative", ["", "   ", ".", "a/.."])
def test_a_relative_path_naming_no_file_is_refused(
    storage: Storage, tmp_path: Path, relative: str
) -> None:
    with pytest.raises(UnsafeDownloadPath, match="names no file"):
        download_tasks([one_file(storage, relative)], output=tmp_path / "out")
    assert not (tmp_path / "out" / "00042").exists()


@pytest.mark.parametrize("server_jid", ["../../x", "/etc", "00042/../..", "", "4 2"])
def test_a_folder_name_never_comes_from_the_servers_job_id(
    storage: Storage, tmp_path: Path, server_jid: str
) -> None:
    with pytest.raises(UnsafeDownloadPath, match="not digits"):
        task_folder(one_file(storage, jid=server_jid), tmp_path / "out")


class Listing:
    """A stand-in for the client's download listing: scripted pages, as many as asked."""

    def __init__(self, pages: Iterable[list[DownloadTask]], tasks: int = 2) -> None:
        self.pages = pages
        self.tasks = tasks

    def get_tasks(self, jid: str) -> list[dict[str, Any]]:
        return [{"tid": f"{n:03d}"} for n in range(self.tasks)]

    def download_pages(
        self, jid: str, tids: Sequence[str] | None = None, page_size: int = 50
    ) -> Iterable[list[DownloadTask]]:
        return self.pages


def record(jid: str, tid: str = "000") -> DownloadTask:
    return DownloadTask(f"d{tid}", jid, tid, "/renders", ())


def test_a_record_for_another_job_is_refused() -> None:
    client = Listing([[record("00042"), record("00043", "001")]])
    with pytest.raises(ServiceError, match=r"record for job '00043'; refused"):
        listed_downloads(client, "00042", 2)  # type: ignore[arg-type]


def test_the_jid_asked_for_names_the_folder_even_when_the_record_writes_it_unpadded() -> None:
    tasks = listed_downloads(Listing([[record("42")]]), "00042", 2)  # type: ignore[arg-type]
    assert [task.job_id for task in tasks] == ["00042"]


def test_an_endless_listing_stops_after_the_jobs_task_count() -> None:
    def endless() -> Iterator[list[DownloadTask]]:
        while True:
            yield []

    with pytest.raises(ServiceError) as caught:
        listed_downloads(Listing(endless(), tasks=3), "00042", 3)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "job 00042: Conductor's download listing ran past the job's 3 tasks"
        " (0 records on 5 pages); stopped"
    )


def test_a_repeated_cursor_stops_the_walk_in_one_line(tmp_path: Path) -> None:
    fake = FakeConductor()
    pages: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jobs/00042/downloads":
            pages.append(request.url.params.get("start_cursor", ""))
            return httpx.Response(201, json={"downloads": [], "next_cursor": "again"})
        return fake.handle(request)

    with (
        ConductorClient(
            URL,
            ApiKey(CLIENT_ID, PRIVATE_KEY),
            token_cache_dir=tmp_path / "tokens",
            transport=httpx.MockTransport(handle),
        ) as client,
        pytest.raises(ServerError, match="the listing repeats its cursor; stopped$"),
    ):
        list(client.download_pages("42"))
    assert pages == ["", "again"]


class Endless:
    """A storage host whose body never ends (or runs past its Content-Length)."""

    def __init__(self) -> None:
        self.sent = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.end_headers()
                try:
                    while host.sent < 1 << 30:
                        self.wfile.write(b"x" * 65536)
                        host.sent += 65536
                except OSError:
                    return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/f.exr"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_body_past_its_listed_size_stops_at_that_size_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    host = Endless()
    try:
        item = DownloadFile(host.url, md5_of(b"x" * 1000), "f.exr", 1000)
        task = DownloadTask("d0", "00042", "000", "/nowhere", (item,))
        with pytest.raises(DownloadError, match="sent more than the 1000 bytes listed"):
            download_tasks([task], output=tmp_path, attempts=2)
    finally:
        host.server.shutdown()
    assert list((tmp_path / "00042").iterdir()) == []
    assert host.sent < 64 << 20  # the reader stopped; the host did not send its gigabyte


def test_a_jid_of_unicode_digits_is_one_line_naming_the_argument() -> None:
    with pytest.raises(UserError, match=r"^JID: '²' is not a Conductor job id"):
        job_id("²", "JID")


MAIN = "from prefect_conductor.cli.main import main; main()"


@pytest.mark.usefixtures("cli_subprocess")
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["download", "²"], "error: JID: '²' is not a Conductor job id (digits, e.g. 00042)"),
        (["download", "42", "--output", "{file}/x"], "error: --output: cannot write in {file}/x:"),
    ],
)
def test_bad_download_arguments_end_in_one_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    env = {**os.environ, "CONDUCTOR_API_KEY": json.dumps({"client_id": "c", "private_key": "k"})}
    ran = subprocess.run(
        [sys.executable, "-c", MAIN, *(arg.format(file=a_file) for arg in args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 2
    assert ran.stderr.startswith(expected.format(file=a_file)), ran.stderr
    assert ran.stderr.count("\n") == 1
