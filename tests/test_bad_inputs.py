"""The bad-input corpus: every case in tests/bad_inputs/ ends in one line naming the field or file,
a non-zero exit from the CLI, no traceback, and no request to Conductor.

A case is a YAML file: ``expect`` (text the first error line must contain) and the input:
``job`` (fields merged over examples/shot010/job.yaml), or ``job_text`` / ``job_base64`` (a
raw job file, with ``job_suffix``), plus ``scene`` (fields replaced in the example scene export)
or ``scene_images`` (per image path, fields replaced in that image).

Hostile files and settings: ``job_fifo: true`` makes the job file a named pipe; ``scene_path`` /
``catalog_path`` replace the scene export / catalogue given on the command line (``/dev/zero``);
``files`` (name: text) are written into the case's folder; ``env`` sets variables for the run.
In ``scene``, ``files`` and ``env`` strings, ``{tmp}`` is the case's folder and ``{job}`` the job
file. A case also checks that its job file is left as it was (nothing lost).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES

CASES = sorted((Path(__file__).parent / "bad_inputs").glob("*.yaml"))
CATALOG = EXAMPLES.parent / "catalog.json"


def expand(value: Any, folder: Path, job_path: Path) -> Any:
    """``{tmp}`` and ``{job}`` replaced in every string of ``value``."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(folder)).replace("{job}", str(job_path))
    if isinstance(value, list):
        return [expand(item, folder, job_path) for item in value]
    if isinstance(value, dict):
        return {key: expand(item, folder, job_path) for key, item in value.items()}
    return value


def write_inputs(case: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    job_path = folder / f"job{case.get('job_suffix', '.yaml')}"
    for name, text in expand(case.get("files", {}), folder, job_path).items():
        (folder / name).write_text(text)
    if case.get("job_fifo"):
        os.mkfifo(job_path)
    elif "job_text" in case:
        job_path.write_text(case["job_text"])
    elif "job_base64" in case:
        job_path.write_bytes(base64.b64decode(case["job_base64"]))
    else:
        job = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
        job.update(case.get("job", {}))
        job_path.write_text(yaml.safe_dump(job, allow_unicode=True))
    scene = json.loads((EXAMPLES / "scene_export.json").read_text())
    scene.update(expand(case.get("scene", {}), folder, job_path))
    for image in scene["images"]:
        image.update(case.get("scene_images", {}).get(image["path"], {}))
    # The example's relative paths stay relative to the example folder.
    scene_path = EXAMPLES / f".case-{folder.name}.json"
    scene_path.write_text(json.dumps(scene))
    return job_path, scene_path


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_bad_input_is_one_clear_line(
    case_file: Path,
    tmp_path: Path,
    sandbox: SandboxHandle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect_conductor.cli.main import main

    case = yaml.safe_load(case_file.read_text())
    job_path, scene_path = write_inputs(case, tmp_path)
    job_before = None if case.get("job_fifo") else job_path.read_bytes()
    monkeypatch.setenv("CONDUCTOR_URL", sandbox.url)
    monkeypatch.setenv("CONDUCTOR_API_KEY", sandbox.api_key)
    for name, value in expand(case.get("env", {}), tmp_path, job_path).items():
        monkeypatch.setenv(name, value)
    given_scene = case.get("scene_path", str(scene_path))
    argv = ["prefect-conductor", "preview", str(job_path), "--scene", given_scene]
    monkeypatch.setattr(sys, "argv", [*argv, "--catalog", case.get("catalog_path", str(CATALOG))])
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        scene_path.unlink()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exited.value.code not in (0, None)
    assert lines and all(line.startswith("error: ") for line in lines), err
    assert case["expect"] in lines[0], err
    assert "Traceback" not in err
    assert sandbox.state()["requests"] == []  # nothing reached Conductor
    if job_before is not None:
        assert job_path.read_bytes() == job_before  # the input is left as it was
