"""The studio commands without PostgreSQL: what is said when nothing runs or is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.studio import postgres


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
