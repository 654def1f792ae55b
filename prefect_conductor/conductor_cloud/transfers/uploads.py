"""Upload a job's files: md5 (cached), ask Conductor which it lacks, PUT only those to storage.

The reference uploader runs ~3T+6 threads joined by polling queues (5-10 s of fixed latency even
for a handful of files), waits for 20 md5s before asking for the first URLs, uploads multipart
parts one after another with each part fully in memory, sends the Conductor bearer token to the
storage host on GCS-style URLs, and hangs on an empty folder. Here one coordinating loop (the
caller's thread) owns all state and reacts to completed futures of two pools:

* a hashing pool: ``stat`` -> md5 cache -> streamed md5 (``hashlib`` releases the GIL);
* an I/O pool: ``get_upload_urls`` for each batch of ``batch_size`` hashes *as soon as the batch is
  full* (so uploads start while later files are still being hashed), then single-part PUTs and
  multipart parts (in parallel, each streamed from its offset in 1 MiB reads), then the multipart
  completions.

Storage PUTs go through their own ``httpx.Client`` that never carries the Conductor credentials,
with ``Content-Type: application/octet-stream`` and an explicit ``Content-Length`` (S3 rejects
chunked bodies), plus ``Content-MD5`` on single-part PUTs to GCS-style URLs only, as ciocore
does (:func:`single_part_headers`). Every attempt re-opens the file at the right
offset, and rolls back the progress the failed attempt had credited, so progress never exceeds
100%. A file that changes or vanishes between hashing and upload is a :class:`UserError` naming
it: its md5 is already in the job, so uploading the new bytes would be wrong.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from prefect_conductor.conductor_cloud.api.retry import RetryPolicy, send_with_retries
from prefect_conductor.conductor_cloud.errors import ServiceError, SubmitterError, UserError
from prefect_conductor.conductor_cloud.job.paths import local_posix_path
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache, md5_base64

if TYPE_CHECKING:
    from prefect_conductor.conductor_cloud.api.client import (
        ConductorClient,
        MultiPartUrl,
        SinglePartUrl,
        UploadUrls,
    )

__all__ = [
    "Md5Cache",
    "UploadError",
    "UploadProgress",
    "UploadResult",
    "UploadedFile",
    "hash_files",
    "md5_base64",
    "upload_files",
]

#: Bytes read from disk per body chunk: memory per transfer stays at this, whatever the part size.
CHUNK_SIZE = 1 << 20
#: The progress callback is called at most this often (plus once at the end).
PROGRESS_INTERVAL = 0.2

STAT_FIELDS = (
    "st_mode",
    "st_ino",
    "st_dev",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_atime",
    "st_mtime",
    "st_ctime",
)


class UploadError(ServiceError):
    """A storage host kept failing for a file; the message names the file (never a signed URL).

    Transient: a new attempt asks for fresh signed URLs and hashes nothing again (md5 cache).
    """

    transient = True

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"upload of {path} failed: {reason}")


class _Stopped(Exception):
    """Raised inside workers once another worker failed, so everything winds down quickly."""


@dataclass(frozen=True)
class UploadProgress:
    """A snapshot of an upload. ``files_hashed`` counts files read; cache hits are ``files_cached``.

    ``rate`` is bytes per second of the upload alone (hashing time excluded), ``eta`` seconds left
    once every batch has been answered (None while the amount to upload is still unknown).
    """

    files_total: int
    files_hashed: int
    bytes_hashed: int
    files_cached: int
    files_to_upload: int
    files_uploaded: int
    files_skipped: int
    bytes_to_upload: int
    bytes_uploaded: int
    elapsed: float
    rate: float
    eta: float | None


@dataclass(frozen=True)
class UploadedFile:
    """One file of the job: its md5, and whether this run uploaded it (False: server had it)."""

    path: str
    md5: str
    size: int
    uploaded: bool
    stat: dict[str, float | int]


@dataclass(frozen=True)
class UploadResult:
    """Every file with its md5, and what the run cost."""

    files: tuple[UploadedFile, ...]
    bytes_hashed: int
    bytes_uploaded: int
    files_uploaded: int
    seconds: float


@dataclass(frozen=True)
class _Hashed:
    """A file's md5 and the stat it was computed against (to detect later changes)."""

    path: Path
    md5: str
    info: os.stat_result
    cached: bool


@dataclass
class _Counters:
    """Progress counters shared by the workers; every change goes through ``add``."""

    files_total: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    files_cached: int = 0
    files_to_upload: int = 0
    files_uploaded: int = 0
    files_skipped: int = 0
    bytes_to_upload: int = 0
    bytes_uploaded: int = 0
    amount_known: bool = False
    started: float = field(default_factory=time.monotonic)
    upload_started: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def mark_upload_started(self) -> None:
        with self.lock:
            if self.upload_started is None:
                self.upload_started = time.monotonic()

    def snapshot(self) -> UploadProgress:
        with self.lock:
            now = time.monotonic()
            uploading = now - self.upload_started if self.upload_started is not None else 0.0
            rate = self.bytes_uploaded / uploading if uploading > 0 else 0.0
            left = self.bytes_to_upload - self.bytes_uploaded
            eta: float | None = None
            if self.amount_known:
                eta = 0.0 if left <= 0 else (left / rate if rate > 0 else None)
            return UploadProgress(
                files_total=self.files_total,
                files_hashed=self.files_hashed,
                bytes_hashed=self.bytes_hashed,
                files_cached=self.files_cached,
                files_to_upload=self.files_to_upload,
                files_uploaded=self.files_uploaded,
                files_skipped=self.files_skipped,
                bytes_to_upload=self.bytes_to_upload,
                bytes_uploaded=self.bytes_uploaded,
                elapsed=now - self.started,
                rate=rate,
                eta=eta,
            )


class _Reporter:
    """Calls the progress callback at most every PROGRESS_INTERVAL seconds, and once at the end."""

    def __init__(
        self, counters: _Counters, callback: Callable[[UploadProgress], None] | None
    ) -> None:
        self.counters = counters
        self.callback = callback
        self.last = 0.0

    def maybe(self) -> None:
        now = time.monotonic()
        if self.callback is not None and now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            self.callback(self.counters.snapshot())

    def final(self) -> None:
        if self.callback is not None:
            self.callback(self.counters.snapshot())


# ---------------------------------------------------------------------------------------- hashing


def _unique_absolute(files: Sequence[Path]) -> list[Path]:
    """Absolute paths in first-seen order, each once: Conductor keys files by absolute path."""
    return list(dict.fromkeys(Path(os.path.abspath(os.fspath(f))) for f in files))


def _stat(path: Path, when: str) -> os.stat_result:
    """``os.stat`` turned into one-line user errors naming the file."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: file vanished {when}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file")
    return info


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino) != (
        after.st_size,
        after.st_mtime_ns,
        after.st_ino,
    )


def _hash_one(path: Path, cache: Md5Cache, counters: _Counters, stop: threading.Event) -> _Hashed:
    """The md5 of one file, from the cache when its size, mtime and inode are unchanged."""
    if stop.is_set():
        raise _Stopped
    before = _stat(path, "before it could be hashed")
    cached = cache.lookup(path, before)
    if cached is not None:
        counters.add(files_cached=1)
        return _Hashed(path, cached, before, cached=True)

    def on_bytes(count: int) -> None:
        counters.add(bytes_hashed=count)
        if stop.is_set():
            raise _Stopped

    try:
        md5 = md5_base64(path, on_bytes=on_bytes)
    except FileNotFoundError:
        raise UserError(f"{path}: file vanished while it was being hashed") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    if _changed(before, _stat(path, "while it was being hashed")):
        raise UserError(f"{path} changed while it was being hashed; submit again once it is saved")
    cache.store(path, before, md5)
    counters.add(files_hashed=1)
    return _Hashed(path, md5, before, cached=False)


def _drain(futures: set[Future[Any]], reporter: _Reporter) -> Iterator[Future[Any]]:
    """Yield futures as they complete (more may be added meanwhile), reporting progress."""
    while futures:
        done, _ = wait(futures, timeout=PROGRESS_INTERVAL, return_when=FIRST_COMPLETED)
        for future in done:
            futures.discard(future)
            yield future
        reporter.maybe()


def _stop_all(futures: set[Future[Any]], stop: threading.Event) -> None:
    """After a failure: queued work is cancelled, running work sees ``stop`` at its next block."""
    stop.set()
    for future in futures:
        future.cancel()


def hash_files(
    files: Sequence[Path],
    cache: Md5Cache | None = None,
    workers: int = 8,
    progress: Callable[[UploadProgress], None] | None = None,
) -> dict[Path, str]:
    """Base64 md5 of every file (absolute path -> md5), in parallel, through the md5 cache.

    ``cache=None`` uses the per-user default cache; pass ``Md5Cache.disabled()`` to always hash.
    """
    paths = _unique_absolute(files)
    owned = cache is None
    md5_cache = Md5Cache() if cache is None else cache
    counters = _Counters(files_total=len(paths))
    reporter = _Reporter(counters, progress)
    stop = threading.Event()
    result: dict[Path, str] = {}
    try:
        with ThreadPoolExecutor(max(1, min(workers, len(paths))), "md5") as pool:
            pending = {pool.submit(_hash_one, p, md5_cache, counters, stop) for p in paths}
            try:
                for future in _drain(pending, reporter):
                    hashed: _Hashed = future.result()
                    result[hashed.path] = hashed.md5
            except BaseException:
                _stop_all(pending, stop)
                raise
    finally:
        if owned:
            md5_cache.close()
    reporter.final()
    return {path: result[path] for path in paths}


# ---------------------------------------------------------------------------------------- storage


class _Credit:
    """Bytes one transfer has credited to progress, taken back when the transfer is retried."""

    def __init__(self, counters: _Counters) -> None:
        self.counters = counters
        self.sent = 0

    def reset(self) -> None:
        if self.sent:
            self.counters.add(bytes_uploaded=-self.sent)
            self.sent = 0

    def __call__(self, count: int) -> None:
        self.sent += count
        self.counters.add(bytes_uploaded=count)


def _file_slice(
    hashed: _Hashed, offset: int, length: int, credit: _Credit, stop: threading.Event
) -> Iterator[bytes]:
    """``length`` bytes of the file from ``offset``, read lazily in CHUNK_SIZE pieces."""
    with open(hashed.path, "rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining:
            if stop.is_set():
                raise _Stopped
            data = handle.read(min(CHUNK_SIZE, remaining))
            if not data:
                raise UserError(f"{hashed.path} changed after it was hashed (it is shorter now)")
            remaining -= len(data)
            credit(len(data))
            yield data


S3_STYLE_HOSTS = ("amazonaws", "coreweave")
"""ciocore ``UploadWorker.do_singlepart_upload``: a URL containing one of these is S3-style."""


def single_part_headers(url: str, md5: str, kms_key: str | None) -> dict[str, str]:
    """The extra headers of a single-part PUT, per storage host, as ciocore sends them.

    S3-style URLs get none (a ``Content-MD5`` the URL was not signed with is refused); any other
    (GCS-style) URL gets ``Content-MD5`` and the KMS key header when Conductor names a key.
    ``Content-Type: application/octet-stream`` and ``Content-Length`` go on every PUT (``_put``);
    the Conductor token never does.
    """
    if any(marker in url for marker in S3_STYLE_HOSTS):
        return {}
    headers = {"Content-MD5": md5}
    if kms_key:
        headers["x-goog-encryption-kms-key-name"] = kms_key
    return headers


def _storage_host(url: str) -> str:
    """Where a signed URL points, without its query (which holds the signature)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class _Multipart:
    """A multipart upload in flight: its URLs, the file, and the ETags collected so far."""

    spec: MultiPartUrl
    hashed: _Hashed
    etags: dict[int, str] = field(default_factory=dict)


class _Uploader:
    """The I/O side: URL requests, storage PUTs and multipart completions, run in the I/O pool."""

    def __init__(
        self,
        client: ConductorClient,
        project: str | None,
        http: httpx.Client,
        policy: RetryPolicy,
        counters: _Counters,
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.project = project
        self.http = http
        self.policy = policy
        self.counters = counters
        self.stop = stop

    def request_urls(self, batch: list[_Hashed]) -> UploadUrls:
        from prefect_conductor.conductor_cloud.api.client import UploadRequest

        if self.stop.is_set():
            raise _Stopped
        requests = [
            UploadRequest(local_posix_path(str(h.path)), h.md5, h.info.st_size) for h in batch
        ]
        return self.client.get_upload_urls(requests, self.project)

    def _check_unchanged(self, hashed: _Hashed) -> None:
        if _changed(hashed.info, _stat(hashed.path, "after it was hashed, before its upload")):
            raise UserError(
                f"{hashed.path} changed after it was hashed; submit again once it is saved"
            )

    def _put(
        self,
        hashed: _Hashed,
        url: str,
        offset: int,
        length: int,
        headers: dict[str, str],
    ) -> httpx.Response:
        """One PUT of a file range, retried by the project's policy, each try from ``offset``."""
        if self.stop.is_set():
            raise _Stopped
        self._check_unchanged(hashed)
        self.counters.mark_upload_started()
        credit = _Credit(self.counters)

        def request() -> httpx.Request:
            credit.reset()
            return httpx.Request(
                "PUT",
                url,
                headers={
                    **headers,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(length),
                },
                content=_file_slice(hashed, offset, length, credit, self.stop),
            )

        try:
            response = send_with_retries(self.http, request, self.policy)
        except (SubmitterError, _Stopped):
            raise
        except httpx.HTTPError as error:
            raise UploadError(
                hashed.path, f"{type(error).__name__} talking to {_storage_host(url)}"
            ) from None
        if not response.is_success:
            raise UploadError(
                hashed.path,
                f"storage {_storage_host(url)} answered {response.status_code}"
                f" {response.reason_phrase}".rstrip(),
            )
        self._check_unchanged(hashed)
        return response

    def put_single(self, spec: SinglePartUrl, hashed: _Hashed, kms_key: str | None) -> _Hashed:
        self._put(
            hashed,
            spec.url,
            0,
            hashed.info.st_size,
            single_part_headers(spec.url, hashed.md5, kms_key),
        )
        return hashed

    def put_part(self, upload: _Multipart, part_number: int, url: str) -> tuple[int, str]:
        size = upload.hashed.info.st_size
        offset = (part_number - 1) * upload.spec.part_size
        length = min(upload.spec.part_size, size - offset)
        if part_number < 1 or length <= 0:
            raise UploadError(upload.hashed.path, f"server sent an invalid part {part_number}")
        response = self._put(upload.hashed, url, offset, length, {})
        etag = response.headers.get("ETag", "").strip('"')
        if not etag:
            raise UploadError(upload.hashed.path, f"storage sent no ETag for part {part_number}")
        return part_number, etag

    def complete(self, upload: _Multipart) -> _Hashed:
        if self.stop.is_set():
            raise _Stopped
        parts = sorted(upload.etags.items())
        self.client.complete_multipart(
            upload.spec.upload_id, upload.hashed.md5, parts, self.project
        )
        return upload.hashed


def _storage_http(workers: int) -> httpx.Client:
    """The storage client: no Conductor auth ever, no redirects, bounded connections."""
    return httpx.Client(
        auth=None,
        follow_redirects=False,
        timeout=httpx.Timeout(30.0, read=300.0, write=300.0),
        limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        headers={"User-Agent": "prefect-conductor-uploader"},
    )


# ---------------------------------------------------------------------------------------- pipeline


class _Run:
    """The coordinating loop of one upload. Only the caller's thread touches its state.

    Futures are tagged with what they are; each completion triggers the next step: a hash joins
    the batch (a full batch asks for URLs), URLs start PUTs and parts, the last part of a file
    starts its completion. Conductor API calls get their own two threads so they never queue
    behind long transfers.
    """

    def __init__(
        self, uploader: _Uploader, cache: Md5Cache, batch_size: int, reporter: _Reporter
    ) -> None:
        self.uploader = uploader
        self.counters = uploader.counters
        self.stop = uploader.stop
        self.cache = cache
        self.batch_size = batch_size
        self.reporter = reporter
        self.hashed: dict[str, _Hashed] = {}
        self.uploaded: set[str] = set()
        self._tags: dict[Future[Any], tuple[str, Any]] = {}
        self._pending: set[Future[Any]] = set()

    def _submit(
        self, pool: ThreadPoolExecutor, tag: str, payload: Any, fn: Callable[..., Any], *args: Any
    ) -> None:
        future = pool.submit(fn, *args)
        self._tags[future] = (tag, payload)
        self._pending.add(future)

    def execute(self, paths: list[Path], workers: int) -> None:
        with (
            ThreadPoolExecutor(max(1, min(workers, len(paths))), "md5") as hash_pool,
            ThreadPoolExecutor(2, "conductor-api") as api_pool,
            ThreadPoolExecutor(workers, "upload") as io_pool,
        ):
            try:
                self._loop(paths, hash_pool, api_pool, io_pool)
            except BaseException:
                _stop_all(self._pending, self.stop)
                raise

    def _loop(
        self,
        paths: list[Path],
        hash_pool: ThreadPoolExecutor,
        api_pool: ThreadPoolExecutor,
        io_pool: ThreadPoolExecutor,
    ) -> None:
        uploader = self.uploader
        for path in paths:
            self._submit(
                hash_pool, "hash", None, _hash_one, path, self.cache, self.counters, self.stop
            )
        hashes_left = len(paths)
        url_requests = 0
        batch: list[_Hashed] = []
        if not paths:
            self.counters.amount_known = True
        for future in _drain(self._pending, self.reporter):
            tag, payload = self._tags.pop(future)
            value = future.result()
            if tag == "hash":
                hashes_left -= 1
                self.hashed[str(value.path)] = value
                batch.append(value)
                if len(batch) >= self.batch_size or (hashes_left == 0 and batch):
                    self._submit(api_pool, "urls", batch, uploader.request_urls, batch)
                    url_requests += 1
                    batch = []
            elif tag == "urls":
                url_requests -= 1
                self._dispatch(value, payload, io_pool)
            elif tag == "part":
                number, etag = value
                payload.etags[number] = etag
                if len(payload.etags) == len(payload.spec.parts):
                    self._submit(api_pool, "done", payload, uploader.complete, payload)
            else:  # "put" or "done": a whole file is stored
                self.counters.add(files_uploaded=1)
                self.uploaded.add(str(value.path))
            if hashes_left == 0 and url_requests == 0:
                self.counters.amount_known = True

    def _dispatch(
        self, urls: UploadUrls, batch: list[_Hashed], io_pool: ThreadPoolExecutor
    ) -> None:
        """Start the transfers the server asked for; the rest of the batch it already has."""
        by_path = {local_posix_path(str(hashed.path)): hashed for hashed in batch}
        wanted: set[str] = set()
        for single in urls.single_part:
            hashed = by_path.get(single.file_path)
            if hashed is None or single.file_path in wanted:
                continue
            wanted.add(single.file_path)
            self.counters.add(files_to_upload=1, bytes_to_upload=hashed.info.st_size)
            self._submit(
                io_pool, "put", None, self.uploader.put_single, single, hashed, urls.kms_key_name
            )
        for multi in urls.multi_part:
            hashed = by_path.get(multi.file_path)
            if hashed is None or multi.file_path in wanted:
                continue
            if not multi.parts or multi.part_size <= 0:
                raise UploadError(hashed.path, "server sent a multipart upload without parts")
            wanted.add(multi.file_path)
            self.counters.add(files_to_upload=1, bytes_to_upload=hashed.info.st_size)
            upload = _Multipart(multi, hashed)
            for number, url in multi.parts:
                self._submit(io_pool, "part", upload, self.uploader.put_part, upload, number, url)
        self.counters.add(files_skipped=len(by_path) - len(wanted))


def upload_files(
    client: ConductorClient,
    files: Sequence[Path],
    *,
    project: str | None,
    cache: Md5Cache | None = None,
    workers: int = 8,
    batch_size: int = 20,
    progress: Callable[[UploadProgress], None] | None = None,
    storage_policy: RetryPolicy | None = None,
) -> UploadResult:
    """Hash ``files``, ask Conductor which it lacks, upload only those; return every md5.

    ``cache=None`` uses the per-user md5 cache. ``workers`` bounds both the hashing threads and
    the concurrent transfers. Raises :class:`UserError` naming the file when one vanished,
    changed after hashing, or could not be stored after the retries.
    """
    paths = _unique_absolute(files)
    workers = max(1, workers)
    owned = cache is None
    md5_cache = Md5Cache() if cache is None else cache
    counters = _Counters(files_total=len(paths))
    reporter = _Reporter(counters, progress)
    stop = threading.Event()
    policy = storage_policy if storage_policy is not None else RetryPolicy()
    try:
        with _storage_http(workers) as http:
            run = _Run(
                _Uploader(client, project, http, policy, counters, stop),
                md5_cache,
                max(1, batch_size),
                reporter,
            )
            run.execute(paths, workers)
    finally:
        if owned:
            md5_cache.close()
    reporter.final()
    snapshot = counters.snapshot()
    results = []
    for path in paths:
        hashed = run.hashed[str(path)]
        results.append(
            UploadedFile(
                path=str(path),
                md5=hashed.md5,
                size=hashed.info.st_size,
                uploaded=str(path) in run.uploaded,
                stat={name: getattr(hashed.info, name) for name in STAT_FIELDS},
            )
        )
    return UploadResult(
        files=tuple(results),
        bytes_hashed=snapshot.bytes_hashed,
        bytes_uploaded=snapshot.bytes_uploaded,
        files_uploaded=snapshot.files_uploaded,
        seconds=snapshot.elapsed,
    )


# ---------------------------------------------------------------------------------------- display


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def describe(progress: UploadProgress) -> tuple[str, str]:
    """Two one-line summaries (md5, upload) of a progress snapshot, for bars and logs alike."""
    md5 = (
        f"{progress.files_hashed + progress.files_cached}/{progress.files_total} files,"
        f" {progress.files_cached} cached, {_size(progress.bytes_hashed)} read"
    )
    if progress.eta is not None and not progress.files_to_upload:  # Conductor has every file
        stored = f" ({progress.files_skipped} already stored)" if progress.files_skipped else ""
        return md5, f"nothing to upload{stored}"
    eta = "" if progress.eta is None else f", {progress.eta:.0f} s left"
    stored = f" ({progress.files_skipped} already stored)" if progress.files_skipped else ""
    upload = (
        f"{progress.files_uploaded}/{progress.files_to_upload} files{stored},"
        f" {_size(progress.bytes_uploaded)}/{_size(progress.bytes_to_upload)}"
        f" at {_size(progress.rate)}/s{eta}"
    )
    return md5, upload
