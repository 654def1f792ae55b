"""Fetch a job's rendered files: skip what is already on disk, verify every byte, never leave a
half file under its final name.

The listing comes from Conductor (``POST /jobs/{jid}/downloads`` pages, see ``client``); this
module only needs the records it returns. Each file is a signed URL fetched with a plain GET and
no Conductor token (ciocore ``base_downloader``), with its base64 md5, its path relative to the
task's output folder and its size. Compared with the reference downloader:

* a file already on disk with the same md5 is skipped (the md5 cache makes the second look free);
* the body streams into a fresh hidden file beside the target (never an existing entry), stops
  at the listed size, is checked against the md5, and only then renamed over the final name, so
  a killed download leaves no half file under that name;
* nothing below the output folder is followed if it is a link (``safe_files``): a planted link
  cannot redirect a write, and a linked subfolder is refused;
* the job's folder is named from the job asked for, never from the server's record;
* an md5 mismatch or a dropped connection fetches the file again, up to ``attempts`` times;
* several files download at once through a bounded pool, each with one fixed-size buffer, so
  memory does not grow with file size;
* a relative path that would leave the output folder (``../``, absolute) or is empty is refused.

Errors are :class:`DownloadError` (a transient service error): one line naming the file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.conductor_cloud.transfers.safe_files import Folder

CHUNK_BYTES = 1 << 20
"""One read from the network, and the only buffer a transfer holds."""

DEFAULT_WORKERS = 4
DEFAULT_ATTEMPTS = 3

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_JOB_ID = re.compile(r"[0-9]{1,9}\Z")


class DownloadError(ServiceError):
    """A file could not be fetched intact after every attempt; names the file, never the URL."""

    transient = True


class UnsafeDownloadPath(UserError):
    """Conductor listed a file whose path would land outside its output folder."""


@dataclass(frozen=True)
class DownloadFile:
    """One file of a task: where it goes (relative to the task's folder), its size and md5."""

    url: str = field(repr=False)
    md5: str
    relative_path: str
    size: int

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DownloadFile:
        """From a ``files[]`` entry of a downloads page (url, md5, relative_path, size)."""
        return cls(
            url=str(record["url"]),
            md5=str(record["md5"]),
            relative_path=str(record["relative_path"]),
            size=int(record.get("size") or 0),
        )


@dataclass(frozen=True)
class DownloadTask:
    """One task's downloads: its id, the server's output folder for it, and its files."""

    download_id: str
    job_id: str
    task_id: str
    output_dir: str
    files: tuple[DownloadFile, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.files)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DownloadTask:
        """From a ``downloads[]`` entry (download_id, job_id, task_id, output_dir, files)."""
        return cls(
            download_id=str(record.get("download_id", "")),
            job_id=str(record.get("job_id", "")),
            task_id=str(record.get("task_id", "")),
            output_dir=str(record.get("output_dir") or ""),
            files=tuple(DownloadFile.from_record(item) for item in record.get("files") or ()),
        )


def task_root(
    task: DownloadTask, output: Path | None, home: Path | None = None
) -> tuple[Path, tuple[str, ...]]:
    """A trusted folder, and the folders below it, where a task's files go (reference rules).

    ``output`` (the CLI's ``--output``) replaces the server's folder with ``output/<jid>``. Without
    it, the server's ``output_dir`` is used when it is a clean absolute path, except that a Windows
    drive path on a posix machine falls back to ``~/CONDUCTOR_DOWNLOADS/<jid>``. The jid must be
    digits: a folder name never comes from anything else in the server's record.
    """
    if not _JOB_ID.match(task.job_id):
        raise UnsafeDownloadPath(f"download: refused job id {task.job_id[:40]!r}: not digits")
    fallback = (home or Path.home()) / "CONDUCTOR_DOWNLOADS"
    if output is not None:
        return output, (task.job_id,)
    server = task.output_dir
    if (os.name != "nt" and _WINDOWS_DRIVE.match(server)) or not server:
        return fallback, (task.job_id,)
    if not Path(server).is_absolute() or ".." in Path(server).parts:
        raise UnsafeDownloadPath(
            f"download: refused output folder {server[:80]!r}: not a clean absolute path"
        )
    return Path(server), ()


def task_folder(task: DownloadTask, output: Path | None, home: Path | None = None) -> Path:
    """Where a task's files go (see ``task_root``)."""
    root, parts = task_root(task, output, home)
    return root.joinpath(*parts)


def relative_parts(relative_path: str) -> tuple[str, ...]:
    """The folders and file name of ``relative_path``, refusing one that leaves its folder."""
    clean = posixpath.normpath(relative_path.replace("\\", "/"))
    if clean.startswith(("/", "../")) or clean == ".." or _WINDOWS_DRIVE.match(clean):
        raise UnsafeDownloadPath(f"download: refused {relative_path!r}: outside the output folder")
    if not relative_path.strip() or clean == ".":
        raise UnsafeDownloadPath(f"download: refused {relative_path!r}: names no file")
    return tuple(clean.split("/"))


def target_path(folder: Path, relative_path: str) -> Path:
    """``folder/relative_path``, refusing a path that climbs out of ``folder``."""
    return folder.joinpath(*relative_parts(relative_path))


@dataclass
class DownloadStats:
    """What a download did: files and bytes fetched, skipped (already on disk) and refetched."""

    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    files_skipped: int = 0
    bytes_skipped: int = 0
    bytes_fetched: int = 0
    refetched: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


ProgressCallback = Callable[[DownloadStats], None]


class FileFetcher:
    """Downloads single files into place: skip, stream, verify, rename. Safe across threads."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        cache: Md5Cache | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        stats: DownloadStats | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.http = http
        self.cache = cache or Md5Cache.disabled()
        self.attempts = max(1, attempts)
        self.stats = stats or DownloadStats()
        self.on_progress = on_progress

    def _tell(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.stats)

    def _local_md5(self, folder: Folder, name: str) -> str | None:
        """The md5 of the regular file already at ``name`` (cached by path, size, mtime, inode)."""
        info = folder.file_info(name)
        if info is None:
            return None
        path = folder.path / name
        known = self.cache.lookup(path, info)
        if known is not None:
            return known
        digest = base64.b64encode(folder.md5(name)).decode("ascii")
        self.cache.store(path, info, digest)
        return digest

    def fetch(self, item: DownloadFile, root: Path, parts: Sequence[str]) -> bool:
        """Put ``item`` at ``root/parts``; False when it was already there with the same md5.

        Nothing below ``root`` is followed if it is a link (see ``safe_files``).
        """
        target = root.joinpath(*parts)
        try:
            with Folder(root, parts[:-1]) as folder:
                return self._fetch_into(item, folder, parts[-1])
        except OSError as error:
            raise UserError(f"download: cannot write {target}: {error.strerror or error}") from None

    def _fetch_into(self, item: DownloadFile, folder: Folder, name: str) -> bool:
        if self._local_md5(folder, name) == item.md5:
            self.stats.add(
                files_skipped=1, bytes_skipped=item.size, files_done=1, bytes_done=item.size
            )
            self._tell()
            return False
        reason = ""
        for attempt in range(self.attempts):
            if attempt:
                self.stats.add(refetched=1)
            partial, handle = folder.new_file(name)
            try:
                with handle:
                    digest = self._stream(item, handle)
            except httpx.HTTPError as error:
                reason = f"{type(error).__name__} from the storage host"
                folder.remove(partial)
                continue
            except _BadStatus as error:
                reason = f"the storage host answered HTTP {error.status}"
                folder.remove(partial)
                continue
            except _TooLong:
                reason = f"the storage host sent more than the {item.size} bytes listed"
                folder.remove(partial)
                continue
            except BaseException:
                folder.remove(partial)
                raise
            if digest == item.md5:
                folder.replace(partial, name)
                info = folder.file_info(name)
                if info is not None:
                    self.cache.store(folder.path / name, info, digest)
                self.stats.add(files_done=1)
                self._tell()
                return True
            folder.remove(partial)
            reason = f"md5 {digest} does not match Conductor's {item.md5}"
        raise DownloadError(
            f"download of {folder.path / name} failed after {self.attempts} attempts: {reason}"
        )

    def _stream(self, item: DownloadFile, handle: BinaryIO) -> str:
        """GET the signed URL (no Conductor token) into ``handle``, never past the listed size.

        Returns the md5 of what arrived.
        """
        digest = hashlib.md5(usedforsecurity=False)
        counted = 0
        try:
            with self.http.stream("GET", item.url, headers={"Accept": "*/*"}) as response:
                if response.status_code != 200:
                    raise _BadStatus(response.status_code)
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    if counted + len(chunk) > item.size:
                        raise _TooLong
                    handle.write(chunk)
                    digest.update(chunk)
                    counted += len(chunk)
                    self.stats.add(bytes_done=len(chunk), bytes_fetched=len(chunk))
                    self._tell()
        except BaseException:
            self.stats.add(bytes_done=-counted)
            raise
        if counted != item.size:
            self.stats.add(bytes_done=item.size - counted)
        return base64.b64encode(digest.digest()).decode("ascii")


class _TooLong(Exception):
    """The body ran past the size the listing gave."""


class _BadStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def download_tasks(
    tasks: Iterable[DownloadTask],
    *,
    output: Path | None = None,
    http: httpx.Client | None = None,
    cache: Md5Cache | None = None,
    workers: int = DEFAULT_WORKERS,
    attempts: int = DEFAULT_ATTEMPTS,
    on_progress: ProgressCallback | None = None,
    on_task_done: Callable[[DownloadTask], None] | None = None,
    stats: DownloadStats | None = None,
) -> DownloadStats:
    """Download every file of ``tasks`` with at most ``workers`` transfers at once.

    ``stats`` counts into a caller's running totals (which already include these tasks' files
    and bytes), so several calls add up to one progress bar; without it a fresh count is made.

    ``on_task_done`` is called once per task when all its files are in place (the caller reports
    ``downloaded`` to Conductor there). The first file that fails for good stops the rest and is
    raised as :class:`DownloadError`; files already complete stay, so running again resumes.
    """
    listed: Sequence[DownloadTask] = list(tasks)
    plan: list[tuple[DownloadTask, DownloadFile, Path, tuple[str, ...]]] = []
    for task in listed:
        root, below = task_root(task, output)
        plan.extend(
            (task, item, root, below + relative_parts(item.relative_path)) for item in task.files
        )
    if stats is None:
        stats = DownloadStats(
            files_total=len(plan), bytes_total=sum(entry[1].size for entry in plan)
        )
    owned = http is None
    client = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    fetcher = FileFetcher(
        client, cache=cache, attempts=attempts, stats=stats, on_progress=on_progress
    )
    remaining = {task.download_id or task.task_id: len(task.files) for task in listed}
    lock = threading.Lock()

    def one(task: DownloadTask, item: DownloadFile, root: Path, parts: tuple[str, ...]) -> None:
        fetcher.fetch(item, root, parts)
        key = task.download_id or task.task_id
        with lock:
            remaining[key] -= 1
            finished = remaining[key] == 0
        if finished and on_task_done is not None:
            on_task_done(task)

    try:
        for task in listed:
            if not task.files and on_task_done is not None:
                on_task_done(task)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(one, *entry) for entry in plan]
            try:
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C: stop queued files; those in flight end soon
                for future in futures:
                    future.cancel()
                raise
            for future in pending:
                future.cancel()
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
    finally:
        if owned:
            client.close()
    return stats
