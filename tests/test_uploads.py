"""md5 (cached) and uploads against the sandbox over real HTTP: dedupe, multipart, faults."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.md5cache import Md5Cache, default_cache_path, md5_base64
from prefect_conductor.conductor_cloud.uploads import UploadProgress, hash_files


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
