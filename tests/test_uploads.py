"""md5 (cached) and uploads against the sandbox over real HTTP: dedupe, multipart, faults."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from rich.console import Console

from prefect_conductor.cli.progress import rich_progress
from prefect_conductor.conductor_cloud.api.auth import ApiKey
from prefect_conductor.conductor_cloud.api.client import ConductorClient
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.transfers.md5cache import (
    Md5Cache,
    default_cache_path,
    md5_base64,
)
from prefect_conductor.conductor_cloud.transfers.uploads import (
    UploadProgress,
    hash_files,
    upload_files,
)
from prefect_conductor.sandbox.handle import SandboxHandle

FAST = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.2, deadline=20)


def reference_md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def write(path: Path, size: int, seed: int = 0) -> Path:
    """A file of ``size`` bytes whose content depends on ``seed`` (distinct md5s per seed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(f"{seed}:{path.name}".encode()).digest() * 2048  # 64 KiB
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------ md5


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_md5_base64_matches_hashlib_across_block_boundaries(tmp_path: Path, size: int) -> None:
    path = write(tmp_path / "f.bin", size)
    seen: list[int] = []
    assert md5_base64(path, block_size=4096, on_bytes=seen.append) == reference_md5(path)
    assert sum(seen) == size
    assert all(count <= 4096 for count in seen)


# ------------------------------------------------------------------------------------ md5 cache


def test_cache_folder_and_file_are_private(tmp_path: Path) -> None:
    cache_path = tmp_path / "home" / "deeper" / "md5.sqlite"
    file = write(tmp_path / "a.bin", 10)
    with Md5Cache(cache_path) as cache:
        cache.store(file, file.stat(), reference_md5(file))
        assert mode(cache_path.parent) == 0o700
        assert mode(cache_path) == 0o600
        for sidecar in (Path(f"{cache_path}-wal"), Path(f"{cache_path}-shm")):
            if sidecar.exists():
                assert mode(sidecar) == 0o600
        assert cache.lookup(file, file.stat()) == reference_md5(file)
    with Md5Cache(cache_path) as reopened:
        assert reopened.lookup(file, file.stat()) == reference_md5(file)


def test_cache_tightens_a_loose_file_of_ours(tmp_path: Path) -> None:
    cache_path = tmp_path / "md5.sqlite"
    cache_path.touch()
    cache_path.chmod(0o666)
    file = write(tmp_path / "a.bin", 10)
    with Md5Cache(cache_path) as cache:
        cache.store(file, file.stat(), reference_md5(file))
        assert cache.lookup(file, file.stat()) == reference_md5(file)
    assert mode(cache_path) == 0o600


def test_cache_in_a_folder_others_can_write_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    file = write(tmp_path / "a.bin", 10)
    with caplog.at_level(logging.WARNING), Md5Cache(shared / "md5.sqlite") as cache:
        cache.store(file, file.stat(), reference_md5(file))
        assert cache.lookup(file, file.stat()) is None
    assert not (shared / "md5.sqlite").exists()
    assert "can be written by other users" in caplog.text


def test_cache_key_is_path_size_mtime_ns_and_inode(tmp_path: Path) -> None:
    file = write(tmp_path / "a.bin", 100)
    md5 = reference_md5(file)
    with Md5Cache(tmp_path / "c" / "md5.sqlite") as cache:
        cache.store(file, file.stat(), md5)
        assert cache.lookup(file, file.stat()) == md5
        assert cache.lookup(tmp_path / "other.bin", file.stat()) is None

        info = file.stat()
        os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
        assert cache.lookup(file, file.stat()) is None

        os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns))
        assert cache.lookup(file, file.stat()) == md5
        with file.open("ab") as handle:
            handle.write(b"x")
        os.utime(file, ns=(info.st_atime_ns, info.st_mtime_ns))
        assert cache.lookup(file, file.stat()) is None

        # Same size and mtime, but a new inode: a file replaced by a rename.
        write(file, 100)
        replacement = write(tmp_path / "b.bin", 100, seed=1)
        os.utime(replacement, ns=(info.st_atime_ns, info.st_mtime_ns))
        cache.store(file, file.stat(), md5)
        replacement.replace(file)
        assert file.stat().st_size == info.st_size
        assert file.stat().st_mtime_ns == info.st_mtime_ns
        assert cache.lookup(file, file.stat()) is None


def test_cache_entries_expire_and_garbage_is_ignored(tmp_path: Path) -> None:
    file = write(tmp_path / "a.bin", 10)
    with Md5Cache(tmp_path / "md5.sqlite", max_age_days=0) as stale:
        stale.store(file, file.stat(), reference_md5(file))
        assert stale.lookup(file, file.stat()) is None
    with Md5Cache(tmp_path / "md5.sqlite") as cache:
        assert cache.lookup(file, file.stat()) == reference_md5(file)
        cache.store(file, file.stat(), "not-an-md5")
        assert cache.lookup(file, file.stat()) is None


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    cache_path = tmp_path / "md5.sqlite"
    cache_path.write_bytes(b"this is not a database" * 100)
    cache_path.chmod(0o600)
    file = write(tmp_path / "a.bin", 10)
    with Md5Cache(cache_path) as cache:
        assert cache.lookup(file, file.stat()) is None
        cache.store(file, file.stat(), reference_md5(file))
        assert cache.lookup(file, file.stat()) == reference_md5(file)


def test_cache_is_shared_safely_between_threads(tmp_path: Path) -> None:
    files = [write(tmp_path / "f" / f"{i}.bin", 10 + i) for i in range(200)]
    errors: list[BaseException] = []
    with Md5Cache(tmp_path / "md5.sqlite") as cache:

        def work(chunk: list[Path]) -> None:
            try:
                for file in chunk:
                    cache.store(file, file.stat(), reference_md5(file))
                    assert cache.lookup(file, file.stat()) == reference_md5(file)
            except BaseException as error:  # collected and re-raised in the main thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(files[i::8],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert all(cache.lookup(f, f.stat()) == reference_md5(f) for f in files)


def test_default_cache_path_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path / "pc"))
    assert default_cache_path() == tmp_path / "pc" / "md5.sqlite"
    monkeypatch.delenv("PREFECT_CONDUCTOR_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "prefect-conductor" / "md5.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == Path.home() / ".cache" / "prefect-conductor" / "md5.sqlite"


# ------------------------------------------------------------------------------------ hash_files


def recorder() -> tuple[list[UploadProgress], Callable[[UploadProgress], None]]:
    seen: list[UploadProgress] = []
    return seen, seen.append


def test_hash_files_hashes_in_parallel_then_only_from_the_cache(tmp_path: Path) -> None:
    files = [write(tmp_path / "f" / f"{i}.bin", 70_000 * i) for i in range(12)]
    cache = Md5Cache(tmp_path / "md5.sqlite")
    seen, progress = recorder()
    first = hash_files(files, cache=cache, workers=4, progress=progress)
    assert first == {f: reference_md5(f) for f in files}
    assert list(first) == files
    assert seen[-1].files_hashed == 12
    assert seen[-1].bytes_hashed == sum(f.stat().st_size for f in files)
    assert seen[-1].files_cached == 0

    seen, progress = recorder()
    second = hash_files(files + files[:3], cache=cache, workers=4, progress=progress)
    assert second == first
    assert (seen[-1].files_total, seen[-1].files_cached) == (12, 12)
    assert (seen[-1].files_hashed, seen[-1].bytes_hashed) == (0, 0)

    seen, progress = recorder()
    hash_files(files, cache=Md5Cache.disabled(), workers=4, progress=progress)
    assert seen[-1].files_hashed == 12


def test_hash_files_names_a_missing_file(tmp_path: Path) -> None:
    files = [write(tmp_path / "a.bin", 10), tmp_path / "gone.bin"]
    with pytest.raises(UserError, match=f"^{tmp_path}/gone.bin: file vanished before"):
        hash_files(files, cache=Md5Cache.disabled())


def test_hash_files_makes_relative_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "rel.bin", 10)
    monkeypatch.chdir(tmp_path)
    assert list(hash_files([Path("rel.bin")], cache=Md5Cache.disabled())) == [tmp_path / "rel.bin"]


# ------------------------------------------------------------------- uploads, seen on the wire


class WireTap:
    """A loopback TCP forwarder to the sandbox that keeps every byte the client sends.

    The sandbox signs storage URLs for the host the client called, so the storage PUTs pass
    through the tap too: the test sees the exact request heads our uploader put on the wire.
    """

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent: list[bytearray] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            copy = bytearray()
            with self.lock:
                self.sent.append(copy)
            threading.Thread(target=self._pump, args=(client, upstream, copy), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, copy: bytearray | None) -> None:
        try:
            while data := source.recv(1 << 16):
                if copy is not None:
                    with self.lock:
                        copy.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            source.close()  # each socket is the source of exactly one pump

    def storage_heads(self) -> list[dict[str, str]]:
        """Headers (lower-case names) of every storage PUT sent through the tap."""
        heads = []
        with self.lock:
            streams = [bytes(copy) for copy in self.sent]
        for stream in streams:
            start = stream.find(b"PUT /_storage/")
            while start != -1:
                end = stream.index(b"\r\n\r\n", start)
                lines = stream[start:end].decode("latin-1").split("\r\n")[1:]
                heads.append(
                    {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
                )
                start = stream.find(b"PUT /_storage/", end)
        return heads

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tap(sandbox: SandboxHandle) -> Iterator[WireTap]:
    wire = WireTap(sandbox.url)
    yield wire
    wire.close()


def client_for(url: str, sandbox: SandboxHandle, tmp_path: Path) -> ConductorClient:
    return ConductorClient(
        url=url,
        api_key=ApiKey.from_text(sandbox.api_key),
        token_cache_dir=tmp_path / "tokens",
        policy=FAST,
    )


def test_storage_puts_carry_length_md5_and_no_credentials(
    sandbox: SandboxHandle, tap: WireTap, tmp_path: Path
) -> None:
    sandbox.config(multipart_threshold=200_000, part_size=65_536)
    small = [write(tmp_path / "s" / f"{i}.bin", 1000 + i) for i in range(3)]
    big = write(tmp_path / "b" / "big.bin", 300_000)
    with client_for(tap.url, sandbox, tmp_path) as client:
        result = upload_files(
            client, [*small, big], project="default", cache=Md5Cache.disabled(), storage_policy=FAST
        )
    assert result.files_uploaded == 4
    heads = tap.storage_heads()
    assert len(heads) == 3 + 5  # three single PUTs, five parts (4 x 64 KiB + the rest)
    for head in heads:
        assert "authorization" not in head
        assert "transfer-encoding" not in head
        assert head["content-type"] == "application/octet-stream"
    singles = sorted((h for h in heads if "content-md5" in h), key=lambda h: h["content-md5"])
    expected = sorted((reference_md5(p), str(p.stat().st_size)) for p in small)
    assert [(h["content-md5"], h["content-length"]) for h in singles] == expected
    parts = sorted(int(h["content-length"]) for h in heads if "content-md5" not in h)
    assert parts == [300_000 - 4 * 65_536] + [65_536] * 4
    assert sandbox.state()["bearer_on_storage"] == 0
    assert sandbox.uploads() == {reference_md5(p): p.stat().st_size for p in [*small, big]}


def test_progress_is_not_double_counted_when_parts_are_retried(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    sandbox.config(multipart_threshold=10_000, part_size=16_384)
    sandbox.faults({"method": "PUT", "path": "/_storage/*", "action": "drop_after", "times": 4})
    big = write(tmp_path / "big.bin", 100_000)
    seen, progress = recorder()
    with client_for(sandbox.url, sandbox, tmp_path) as client:
        result = upload_files(
            client,
            [big],
            project="default",
            cache=Md5Cache.disabled(),
            storage_policy=FAST,
            progress=progress,
        )
    puts = [r for r in sandbox.state()["requests"] if r["method"] == "PUT"]
    assert len(puts) == 7 + 4  # every part once, four of them twice
    assert result.bytes_uploaded == 100_000
    assert all(p.bytes_uploaded <= 100_000 for p in seen)
    assert (seen[-1].bytes_uploaded, seen[-1].bytes_to_upload, seen[-1].eta) == (100_000,) * 2 + (
        0.0,
    )
    assert sandbox.uploads() == {reference_md5(big): 100_000}


def test_a_file_changed_between_hashing_and_upload_is_named(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    # The URL request is held back, so the change surely lands between the md5 and the PUT.
    sandbox.faults(
        {
            "method": "POST",
            "path": "/api/v2/files/get_upload_urls",
            "action": "delay",
            "seconds": 0.5,
            "times": 1,
        }
    )
    file = write(tmp_path / "a.bin", 5000)
    changed: list[bool] = []

    def change(progress: UploadProgress) -> None:
        if progress.files_hashed == 1 and not changed:
            changed.append(True)
            write(file, 5001, seed=2)

    with client_for(sandbox.url, sandbox, tmp_path) as client, pytest.raises(UserError) as caught:
        upload_files(
            client,
            [file],
            project="default",
            cache=Md5Cache.disabled(),
            storage_policy=FAST,
            progress=change,
        )
    assert str(caught.value) == (
        f"{file} changed after it was hashed; submit again once it is saved"
    )
    assert sandbox.uploads() == {}


def test_nothing_and_empty_files_upload_cleanly(sandbox: SandboxHandle, tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.bin", 0)
    with client_for(sandbox.url, sandbox, tmp_path) as client:
        nothing = upload_files(client, [], project="default", cache=Md5Cache.disabled())
        result = upload_files(client, [empty, empty], project="default", cache=Md5Cache.disabled())
    assert nothing.files == () and nothing.files_uploaded == 0
    assert [(f.path, f.md5, f.size, f.uploaded) for f in result.files] == [
        (str(empty), reference_md5(empty), 0, True)
    ]
    assert result.files[0].stat["st_ino"] == empty.stat().st_ino
    assert sandbox.uploads() == {reference_md5(empty): 0}


def test_rich_progress_draws_both_bars(sandbox: SandboxHandle, tmp_path: Path) -> None:
    files = [write(tmp_path / f"{i}.bin", 2000, seed=i) for i in range(5)]
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)
    with client_for(sandbox.url, sandbox, tmp_path) as client, rich_progress(console) as show:
        upload_files(client, files, project="default", cache=Md5Cache.disabled(), progress=show)
    text = out.getvalue()
    assert "5/5 files, 0 cached" in text
    assert "5/5 files (0 already stored), 9.8 KiB/9.8 KiB" in text
