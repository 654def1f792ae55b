"""The studio commands without the whole stack: what is said when nothing runs or is missing,
and the PostgreSQL and Redis pieces on their own."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.processes import free_port
from prefect_conductor.studio import postgres, redis_server


def studio(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_CONDUCTOR_HOME": str(home)}
    command = [
        sys.executable,
        "-c",
        "from prefect_conductor.cli.main import main; main()",
        "studio",
    ]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.usefixtures("cli_subprocess")
def test_status_and_down_when_nothing_runs(tmp_path: Path) -> None:
    assert studio("status", home=tmp_path).stdout.strip() == "studio: not running"
    stopped = studio("down", home=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "studio down: nothing left running"


def test_without_postgresql_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "POSTGRES_ROOT", tmp_path)
    with pytest.raises(UserError) as raised:
        postgres.binaries()
    assert str(raised.value) == (
        f"PostgreSQL: no initdb under {tmp_path}/<version>/bin;"
        " install Debian's package: apt-get install -y postgresql"
    )


def test_the_newest_postgresql_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").write_text("")
    monkeypatch.setattr(postgres, "POSTGRES_ROOT", tmp_path)
    assert postgres.binaries() == tmp_path / "15" / "bin"


@pytest.mark.studio
def test_a_cluster_whose_password_file_is_gone_is_made_anew(
    postgresql: Path, tmp_path: Path
) -> None:
    """Root's cluster lives outside the per-user folder; when that folder is removed, the
    password goes with it and the cluster can never be signed in to again: it is replaced."""
    cluster = postgres.Cluster.for_home(tmp_path / "studio")
    try:
        cluster.init()
        assert cluster.initialised() and not cluster.orphaned()
        cluster.password_file.unlink()
        assert cluster.orphaned()
        cluster.discard()
        assert not cluster.initialised()
        cluster.init()  # a new password file, a new cluster that takes it
        assert cluster.initialised() and not cluster.orphaned()
    finally:
        cluster.discard()


def test_without_redis_server_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redis_server.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(UserError) as raised:
        redis_server.binary()
    assert str(raised.value) == (
        "Redis: no redis-server on PATH; install Debian's package: apt-get install -y redis-server"
    )


def _answer(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as link:
        link.sendall(request)
        return link.recv(256)


@pytest.mark.studio
@pytest.mark.usefixtures("redis_server")  # the package; the name is the module's here
def test_redis_asks_for_a_password_kept_off_the_command_line(tmp_path: Path) -> None:
    """Another local user can neither read the password (0600 files, not in ``ps``) nor use
    Redis without it."""
    server = redis_server.RedisServer.for_home(tmp_path / "a studio")  # a space, quoted
    port = free_port()
    process = server.start(port)
    try:
        password = server.password()
        for private in (server.password_file, server.config_file):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert password.encode() not in command
        assert _answer(port, b"PING\r\n").startswith(b"-NOAUTH")
        assert server.ping(port)
    finally:
        process.terminate()
        process.wait(timeout=30)
