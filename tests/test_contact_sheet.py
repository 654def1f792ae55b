"""The scout contact sheet: EXR frames read with OpenImageIO into one small labelled PNG (links and
other files left out, unreadable ones named), shown by the run as a markdown artifact with an
inline image; without OpenImageIO the artifact says so in one line, and a failed download is a
warning while the run carries on. The browser check of the artifact is in test_ui_form.py."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)

from prefect_conductor.conductor_cloud.transfers.contact_sheet import (
    COLUMNS,
    GAP,
    LABEL_HEIGHT,
    MAX_PNG_BYTES,
    SheetUnavailable,
    make_contact_sheet,
)
from prefect_conductor.sandbox.handle import SandboxHandle
from prefect_conductor.sandbox.node.cnode import write_image
from prefect_conductor.tasks.contact_sheet import ARTIFACT_KEY, sheet_markdown
from tests.eventually import eventually
from tests.scenes import make_job
from tests.test_flows import example_job, run_id_of, run_state
from tests.test_follow_local import scene_on_disk

OpenImageIO = pytest.importorskip("OpenImageIO")


def frames(folder: Path) -> list[tuple[str, Path]]:
    """Two images' EXR frames 1, 5 and 9 (as the stand-in renderer writes them)."""
    found = []
    for image in ("beauty", "shadow"):
        (folder / image).mkdir(parents=True, exist_ok=True)
        for frame in (1, 5, 9):
            path = folder / image / f"{image}.{frame:04d}.exr"
            assert write_image(path, frame) == "exr"
            found.append((f"{image}/{path.name}", path))
    return found


def png_size(data: bytes, tmp_path: Path) -> tuple[int, int]:
    (tmp_path / "sheet.png").write_bytes(data)
    spec = OpenImageIO.ImageInput.open(str(tmp_path / "sheet.png")).spec()
    return spec.width, spec.height


def test_exr_frames_make_one_small_labelled_png_leaving_out_links_and_other_files(
    tmp_path: Path,
) -> None:
    files = frames(tmp_path / "job")
    broken = tmp_path / "job" / "shadow" / "shadow.0002.exr"
    broken.write_bytes(b"not an image")
    (tmp_path / "elsewhere.exr").write_bytes(
        (tmp_path / "job" / "beauty" / "beauty.0001.exr").read_bytes()
    )
    link = tmp_path / "job" / "beauty" / "beauty.0003.exr"
    link.symlink_to(tmp_path / "elsewhere.exr")
    notes = tmp_path / "job" / "notes.txt"
    notes.write_text("not a frame")
    listed = [*files, ("shadow/shadow.0002.exr", broken), ("beauty/beauty.0003.exr", link)]
    sheet = make_contact_sheet([*listed, ("notes.txt", notes)])
    assert [(c.relative, c.frame) for c in sheet.cells] == [
        (f"{image}/{image}.{frame:04d}.exr", frame)
        for image in ("beauty", "shadow")
        for frame in (1, 5, 9)
    ]
    assert sheet.unreadable == ["shadow/shadow.0002.exr"]
    assert (sheet.columns, sheet.left_off) == (COLUMNS, 0)
    assert sheet.png.startswith(b"\x89PNG") and len(sheet.png) <= MAX_PNG_BYTES
    width, height = png_size(sheet.png, tmp_path)
    assert width == GAP + COLUMNS * (192 + GAP) and height > 2 * 192  # two rows of square frames


def test_thumbnails_shrink_until_the_png_fits(tmp_path: Path) -> None:
    sheet = make_contact_sheet(frames(tmp_path / "job"), max_bytes=1)
    assert png_size(sheet.png, tmp_path)[0] == GAP + COLUMNS * (24 + GAP)  # the smallest it goes


def test_no_sheet_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(SheetUnavailable, match="none of the 1 files downloaded is an image"):
        make_contact_sheet([("a.txt", tmp_path / "a.txt")])
    files = frames(tmp_path / "job")
    monkeypatch.setitem(sys.modules, "OpenImageIO", None)  # as where it is not installed
    with pytest.raises(SheetUnavailable) as raised:
        make_contact_sheet(files)
    assert str(raised.value) == (
        "OpenImageIO is not installed where this runs (pip install OpenImageIO): no contact sheet"
    )


def test_the_markdown_holds_the_png_inline_and_names_each_cell_safely(tmp_path: Path) -> None:
    files = frames(tmp_path / "job")
    odd = tmp_path / "job" / "beauty" / "be|a`uty.0007.exr"
    odd.write_bytes(files[0][1].read_bytes())
    sheet = make_contact_sheet([*files, ("beauty/be|a`uty.0007.exr", odd)])
    text = sheet_markdown("00042", sheet)
    (data,) = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert base64.b64decode(data) == sheet.png
    assert "| 1.4 | beauty/be_a_uty.0007.exr | 7 |" in text  # row.column, in name order
    assert "| 2.3 | shadow/shadow.0009.exr | 9 |" in text


def _artifacts_and_logs(run_id: Any) -> tuple[dict[str, Any], str]:
    with get_client(sync_client=True) as client:

        def read() -> tuple[dict[str, Any], str] | None:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            text = "\n".join(log.message for log in logs)
            return ({a.key: a for a in artifacts}, text) if "contact sheet" in text else None

        # Logs reach the API in batches, a little after the run.
        return eventually(read, what="the run's artifacts and its contact sheet log line")


@pytest.mark.usefixtures("prefect_backend")
def test_the_run_shows_the_scout_frames_as_a_contact_sheet(
    conductor_env: SandboxHandle, tmp_path: Path
) -> None:
    scene = scene_on_disk(tmp_path, conductor_env)  # Save As below the job's output folder
    state = run_state(make_job(), scene=scene)
    assert state.is_completed()
    scout = state.result()["jobs"]["scout"]["jid"]
    artifacts, logs = _artifacts_and_logs(run_id_of(state))
    text = str(artifacts[ARTIFACT_KEY].data)
    assert text.startswith(f"### Scout job {scout}: 8 frames\n")  # frames 3-4, 7-8 of 2 images
    (data,) = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert base64.b64decode(data).startswith(b"\x89PNG") and len(data) < MAX_PNG_BYTES * 4 / 3 + 4
    assert re.findall(r"\| (?:\S+/)?(beauty|shadow)\.\d{4}\.exr \| (\d+) \|", text) == [
        (image, str(frame)) for image in ("beauty", "shadow") for frame in (3, 4, 7, 8)
    ]
    assert f"scout job {scout}: contact sheet of 8 frames" in logs


@pytest.mark.usefixtures("prefect_backend")
def test_without_openimageio_the_artifact_says_so_and_the_run_completes(
    conductor_env: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "OpenImageIO", None)
    state = run_state(example_job())
    assert state.is_completed()
    scout = state.result()["jobs"]["scout"]["jid"]
    artifacts, _ = _artifacts_and_logs(run_id_of(state))
    assert artifacts[ARTIFACT_KEY].data == (
        f"Scout job {scout}: OpenImageIO is not installed where this runs"
        " (pip install OpenImageIO): no contact sheet\n"
    )


@pytest.mark.usefixtures("prefect_backend")
def test_a_failed_download_is_a_warning_and_the_run_completes(
    conductor_env: SandboxHandle,
) -> None:
    conductor_env.faults({"method": "POST", "path": "/jobs/*/downloads", "status": 400, "times": 0})
    state = run_state(example_job())
    assert state.is_completed()
    scout = state.result()["jobs"]["scout"]["jid"]
    artifacts, logs = _artifacts_and_logs(run_id_of(state))
    assert ARTIFACT_KEY not in artifacts
    assert f"scout job {scout}: no contact sheet: " in logs
    assert len(conductor_env.jobs()) == 2  # the full job went all the same


def test_a_large_frame_keeps_its_proportions_in_its_cell(tmp_path: Path) -> None:
    import numpy

    path = tmp_path / "wide.0001.exr"
    pixels = numpy.zeros((500, 1000, 4), dtype="float16")
    pixels[:, 500:, 0] = 1.0  # the right half red: it stays on the right in the thumbnail
    out = OpenImageIO.ImageOutput.create(str(path))
    assert out.open(str(path), OpenImageIO.ImageSpec(1000, 500, 4, "half"))
    out.write_image(pixels)
    out.close()
    sheet = make_contact_sheet([("wide.0001.exr", path)])
    (tmp_path / "sheet.png").write_bytes(sheet.png)
    drawn = OpenImageIO.ImageBuf(str(tmp_path / "sheet.png"))
    assert (drawn.spec().width, drawn.spec().height) == (
        GAP + 192 + GAP,
        GAP + 96 + LABEL_HEIGHT + GAP,
    )
    left, right = drawn.getpixel(GAP + 40, GAP + 48), drawn.getpixel(GAP + 150, GAP + 48)
    assert left[0] < 0.1 and right[0] > 0.9 and right[1] < 0.1
