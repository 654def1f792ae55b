"""The offline CLI commands: frames and preview, with one-line errors and no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.job.catalog import save_catalog
from prefect_conductor.processes import free_port
from prefect_conductor.sandbox.fixture_catalog import fixture_catalog
from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess, as a person would."""
    return subprocess.run(
        [sys.executable, "-c", "from prefect_conductor.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.usefixtures("cli_subprocess")
def test_frames_info_line() -> None:
    result = cli("frames", "1-10", "--chunk-size", "2", "--scout", "3,8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"


@pytest.mark.usefixtures("cli_subprocess")
def test_frames_json() -> None:
    result = cli("frames", "1-10", "--chunk-size", "2", "--scout", "3,8", "--json")
    document = json.loads(result.stdout)
    assert document == {
        "frames": "1-10",
        "chunks": ["1-2", "3-4", "5-6", "7-8", "9-10"],
        "scout_chunks": [1, 3],
        "info": "2 Scout / 10 Frames -- 5 Chunks -- 1-10",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("frames", "1-10y2"), "error: frames: only the x step modifier is supported in '1-10y2'"),
        (("frames", "1-10", "--chunk-size", "0"), "error: chunk_size: must be at least 1 (got 0)"),
        (("frames", "1-5", "--scout", "auto:x"), "error: --scout: auto: needs a whole number"),
    ],
)
@pytest.mark.usefixtures("cli_subprocess")
def test_frames_errors_are_one_line(args: tuple[str, ...], expected: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("cli_subprocess")
def test_preview_prints_the_payloads_offline(tmp_path: Path) -> None:
    catalog = save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    result = cli(
        "preview",
        str(EXAMPLES / "job.yaml"),
        "--catalog",
        str(catalog),
        "--json",
        env={"PREFECT_CONDUCTOR_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(document["payloads"]) == ["scout", "full"]
    assert document["info"] == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    uploaded = {Path(u["path"]).name for u in document["uploads"]}
    assert "shot010.lighting.cio.project" in uploaded
    assert "sim.0010.abc" in uploaded and "sim.0011.abc" in uploaded  # every match (motion blur)


@pytest.mark.usefixtures("cli_subprocess")
def test_preview_with_a_bad_job_file(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("chunk_size: 0\ncustom_frames: 1-\nbogus: 1\n")
    result = cli("preview", str(job), "--scene", str(EXAMPLES / "scene_export.json"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"error: {job}: ") for line in lines)
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("cli_subprocess")
def test_preview_without_a_catalogue_says_what_to_do(tmp_path: Path) -> None:
    result = cli(
        "preview",
        str(EXAMPLES / "job.yaml"),
        env={"PREFECT_CONDUCTOR_HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "refresh" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.usefixtures("cli_subprocess")
def test_debug_shows_the_traceback_before_the_one_line() -> None:
    result = cli("--debug", "frames", "1-10y2")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: frames: only the x step")


@pytest.mark.usefixtures("cli_subprocess")
def test_offline_commands_start_no_prefect_server(tmp_path: Path) -> None:
    home = {"PREFECT_CONDUCTOR_HOME": str(tmp_path), "PREFECT_SERVER_EPHEMERAL_ENABLED": ""}
    assert cli("--help", env=home).returncode == 0
    assert cli("frames", "1-10", env=home).returncode == 0
    catalog = save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    assert (
        cli("preview", str(EXAMPLES / "job.yaml"), "--catalog", str(catalog), env=home).returncode
        == 0
    )
    assert cli("server", "status", env=home).returncode == 1
    assert not (tmp_path / "prefect-server" / "server.json").exists()


@pytest.mark.usefixtures("cli_subprocess")
def test_help_frames_and_preview_do_not_import_prefect(tmp_path: Path) -> None:
    catalog = save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from prefect_conductor.cli.main import app\n"
        "for args in (['--help'], ['frames', '1-10'], ['preview', sys.argv[1], '--catalog',"
        " sys.argv[2]]):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'prefect'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(EXAMPLES / "job.yaml"), str(catalog)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_CONDUCTOR_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.usefixtures("cli_subprocess")
@pytest.mark.parametrize(
    ("job", "catalog", "expected"),
    [
        (
            "job.yaml",
            "job.yaml",
            "job.yaml: not a catalogue (it has none of its fields: fetched_at",
        ),
        ("catalog.json", "catalog.json", "catalog.json: not a job file (it has none of its fields"),
    ],
)
def test_a_file_of_another_kind_is_one_line(
    tmp_path: Path, job: str, catalog: str, expected: str
) -> None:
    save_catalog(fixture_catalog(), tmp_path / "catalog.json")
    (tmp_path / "job.yaml").write_text((EXAMPLES / "job.yaml").read_text())
    result = cli(
        "preview",
        str(tmp_path / job),
        "--scene",
        str(EXAMPLES / "scene_export.json"),
        "--catalog",
        str(tmp_path / catalog),
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path}/{expected}"), lines


@pytest.mark.usefixtures("cli_subprocess")
def test_help_shows_flags_as_flags() -> None:
    for command in ("submit", "params", "preview", "demo", "download"):
        result = cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "<bool>" not in result.stdout, result.stdout
    assert "  --preview   " in cli("submit", "--help").stdout


@pytest.mark.usefixtures("cli_subprocess")
def test_submit_without_a_key_says_so_before_starting_anything(tmp_path: Path) -> None:
    env = {
        "PREFECT_CONDUCTOR_HOME": str(tmp_path),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "",
        "PREFECT_API_URL": "",
        "CONDUCTOR_API_KEY": "",
        "CONDUCTOR_API_KEY_PATH": "",
    }
    result = cli("submit", str(EXAMPLES / "job.yaml"), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH, or pass"
        " --credentials-block NAME"
    ]
    assert not (tmp_path / "prefect-server").exists()  # no local server was started


@pytest.mark.usefixtures("cli_subprocess")
def test_a_dead_prefect_api_url_is_one_line_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"  # a port nothing listens on
    env = {
        "PREFECT_CONDUCTOR_HOME": str(tmp_path),
        "PREFECT_API_URL": url,
        "CONDUCTOR_API_KEY": json.dumps({"client_id": "c", "private_key": "k"}),
    }
    result = cli("submit", str(EXAMPLES / "job.yaml"), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: PREFECT_API_URL: no Prefect server answers at {url} (ConnectError); start it,"
        " or unset PREFECT_API_URL to use the local server"
    ]


@pytest.mark.usefixtures("cli_subprocess")
def test_a_prefect_api_url_without_its_api_is_one_line(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    env = {  # the sandbox answers 404 to /health, as a Prefect server's UI address does
        "PREFECT_CONDUCTOR_HOME": str(tmp_path),
        "PREFECT_API_URL": sandbox.url,
        "CONDUCTOR_API_KEY": json.dumps({"client_id": "c", "private_key": "k"}),
    }
    result = cli("submit", str(EXAMPLES / "job.yaml"), env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: PREFECT_API_URL: {sandbox.url} is not a Prefect API (its /health is 404); a"
        " server's API address ends in /api, such as http://127.0.0.1:4200/api"
    ]
