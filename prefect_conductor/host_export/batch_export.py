"""The batch exporter the flow's export_scene step runs through the host's command line.

    <host batch command> --project shot.project --output DIR [--title TITLE]

opens the saved project, scans it (see ``exporter``), writes the render package
``DIR/<project>.<title>.cio.project`` and the scene export ``DIR/scene_export.json``, and exits
0. A problem the artist can fix exits 2 with one ``error:`` line on stderr (the flow shows the
last line). The project file is only read. Without ``--title`` the title of the project's only
ConductorJob item is used, or ``render`` when there are none or several.

On a worker, PREFECT_CONDUCTOR_HOST_BATCH holds the host's command that runs this module in batch
mode, for example ``jobs -batch -script <location>/prefect_conductor/host_export/batch_export.py
--``; with the test stand-in it is ``python -m prefect_conductor.host_export.batch_export``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

LOCATION_VARIABLE = "PREFECT_CONDUCTOR_LOCATION"


def _make_importable() -> None:
    """Run by path inside the host, the package may not be on sys.path yet (as in startup)."""
    location = os.environ.get(LOCATION_VARIABLE, "").strip() or str(
        Path(__file__).resolve().parents[2]
    )
    if location not in sys.path:
        sys.path.insert(0, location)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="batch_export", description="Export a saved Jobs project for Conductor."
    )
    parser.add_argument("--project", required=True, help="The saved project file (only read).")
    parser.add_argument("--output", required=True, help="Folder for the package and export.")
    parser.add_argument("--title", default="", help="Job title used in the package's name.")
    arguments, _ = parser.parse_known_args(argv)
    return arguments


def export(project: Path, output: Path, title: str = "") -> Path:
    """Export ``project`` into ``output``; return the scene export's path."""
    from prefect_conductor.conductor_cloud.errors import FieldError
    from prefect_conductor.conductor_cloud.transfers.staging import EXPORT_FILE
    from prefect_conductor.host_export import conductor_job, exporter, host_api

    if not project.is_file():
        raise FieldError("--project", f"{project} does not exist")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FieldError("--output", f"cannot create {output} ({error.strerror})") from None
    conductor_job.register()
    host_api.load_project(str(project))
    if not title:
        titles = exporter.job_titles()
        title = titles[0] if len(titles) == 1 else "render"
    variables = exporter.project_variables()
    package = output / exporter.render_package_name(str(project), title)
    scene = exporter.export_scene(project_path=str(project), render_package=str(package))
    exporter.write_render_package(str(package), variables)
    written = output / EXPORT_FILE
    written.write_text(scene.model_dump_json(indent=1), encoding="utf-8")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 on success, 2 with one ``error:`` line for a problem the artist can fix."""
    arguments = parse(sys.argv[1:] if argv is None else argv)
    _make_importable()
    from prefect_conductor.conductor_cloud.errors import SubmitterError

    try:
        written = export(Path(arguments.project), Path(arguments.output), arguments.title)
    except SubmitterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
