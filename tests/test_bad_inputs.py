"""The bad-input corpus: every case in tests/bad_inputs/ ends in one line naming the field or file,
a non-zero exit from the CLI, no traceback, and no request to Conductor.

A case is a YAML file: ``expect`` (text the first error line must contain) and the input:
``job`` (fields merged over examples/shot010/job.yaml), or ``job_text`` / ``job_base64`` (a
raw job file, with ``job_suffix``), plus ``scene`` (fields replaced in the example scene export)
or ``scene_images`` (per image path, fields replaced in that image).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_conductor.sandbox.handle import SandboxHandle
from tests.scenes import EXAMPLES

CASES = sorted((Path(__file__).parent / "bad_inputs").glob("*.yaml"))
CATALOG = EXAMPLES.parent / "catalog.json"


def write_inputs(case: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    job_path = folder / f"job{case.get('job_suffix', '.yaml')}"
    if "job_text" in case:
        job_path.write_text(case["job_text"])
    elif "job_base64" in case:
        job_path.write_bytes(base64.b64decode(case["job_base64"]))
    else:
        job = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
        job.update(case.get("job", {}))
        job_path.write_text(yaml.safe_dump(job, allow_unicode=True))
    scene = json.loads((EXAMPLES / "scene_export.json").read_text())
    scene.update(case.get("scene", {}))
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
    from prefect_conductor.cli import main

    case = yaml.safe_load(case_file.read_text())
    job_path, scene_path = write_inputs(case, tmp_path)
    monkeypatch.setenv("CONDUCTOR_URL", sandbox.url)
    monkeypatch.setenv("CONDUCTOR_API_KEY", sandbox.api_key)
    argv = ["prefect-conductor", "preview", str(job_path), "--scene", str(scene_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--catalog", str(CATALOG)])
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
