"""What was submitted is what renders: stage the render package under its content hash.

``export_scene`` hands the rest of the pipeline a SceneExport whose render package is a copy in a
staging folder named by the package's sha256. Later edits to the artist's files change nothing
already submitted, a re-submit of the same content reuses the same staged file (and so the same
md5 on Conductor), and the artist's own project file is never written.

When the source is a saved project rather than an export, the host's batch command runs the
exporter (``host_export.batch_export``) into a fresh folder: ``<host_command> --project P
--output DIR [--title T]`` must write ``DIR/scene_export.json`` (the title names the package).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from prefect_conductor.conductor_cloud.errors import FieldError, UserError
from prefect_conductor.conductor_cloud.job.loaders import load_scene
from prefect_conductor.conductor_cloud.job.run_parameters import SceneSource
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.settings import get_settings

EXPORT_TIMEOUT_SECONDS = 3600
EXPORT_FILE = "scene_export.json"


def default_staging_dir() -> Path:
    return get_settings().staging_dir


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def stage_render_package(scene: SceneExport, staging_root: Path) -> SceneExport:
    """Copy the render package to ``staging_root/<sha256[:20]>/<name>``; return the new scene."""
    source = Path(scene.render_package)
    if not source.is_file():
        raise FieldError("render_package", f"{source} does not exist")
    try:
        content = sha256_of(source)
    except OSError as error:
        raise FieldError("render_package", f"cannot read {source} ({error.strerror})") from None
    folder = staging_root / content[:20]
    target = folder / source.name
    if not target.is_file() or sha256_of(target) != content:
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{source.name}.partial"
        shutil.copyfile(source, temp)
        temp.replace(target)
    return scene.model_copy(update={"render_package": str(target)})


def run_host_export(source: SceneSource, output: Path, title: str = "") -> Path:
    """Run the host's batch exporter for a saved project; return the export JSON it wrote."""
    project = Path(source.project_path)
    if not project.is_file():
        raise FieldError("scene.project_path", f"{project} does not exist")
    command = [*source.host_command, "--project", str(project), "--output", str(output)]
    if title:
        command += ["--title", title]
    try:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise FieldError(
            "scene.host_command",
            f"{source.host_command[0]!r} was not found; set PREFECT_CONDUCTOR_HOST_BATCH on the"
            " worker",
        ) from None
    except subprocess.TimeoutExpired:
        raise UserError(
            f"scene.host_command: the export did not finish in {EXPORT_TIMEOUT_SECONDS} s"
        ) from None
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(
            f"scene.host_command: the host's export failed (exit {finished.returncode}): {last}"
        )
    written = output / EXPORT_FILE
    if not written.is_file():
        raise UserError(f"scene.host_command: the export wrote no {EXPORT_FILE} in {output}")
    return written


def export_scene(
    source: SceneSource, staging_dir: str | None = None, title: str = ""
) -> SceneExport:
    """The scene for submission: loaded (or exported), then its render package staged.

    ``title`` (the job's) names the render package a batch export writes.
    """
    staging_root = Path(staging_dir) if staging_dir else default_staging_dir()
    if source.export_path:
        scene = load_scene(source.export_path)
    else:
        output = Path(tempfile.mkdtemp(prefix="export-", dir=_ensure(staging_root)))
        scene = load_scene(run_host_export(source, output, title))
    return stage_render_package(scene, staging_root)


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
