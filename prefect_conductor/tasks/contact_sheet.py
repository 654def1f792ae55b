"""The scout contact sheet: the scout job's frames, downloaded and shown in the Prefect UI.

Once the scout tasks have finished, this step downloads the scout job's frames (the same rule as
the full job's: the job's output folder, or ``PREFECT_CONDUCTOR_HOME/downloads/<jid>`` for a scene
inside this installation), makes a small PNG contact sheet of this job's files (not whatever else
the folder holds) with OpenImageIO (``transfers/contact_sheet.py``) and shows it as the markdown
artifact ``scout-contact-sheet``:
the PNG travels inside the markdown as a ``data:image/png;base64`` image, which Prefect's UI
shows as it is (no server of the studio's needs to serve it), with a table naming each cell.

It is a preview, never a gate: without OpenImageIO the artifact says so in one line, and any
failure to download or draw is one warning line in the run's log; the run carries on.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.conductor_cloud.settings import get_settings
from prefect_conductor.conductor_cloud.transfers.contact_sheet import (
    ContactSheet,
    SheetUnavailable,
    make_contact_sheet,
    require_openimageio,
)
from prefect_conductor.conductor_cloud.transfers.downloads import target_path, task_folder
from prefect_conductor.conductor_cloud.transfers.job_outputs import download_job
from prefect_conductor.conductor_cloud.transfers.md5cache import Md5Cache
from prefect_conductor.tasks.common import client_for
from prefect_conductor.tasks.download import download_folder_for

ARTIFACT_KEY = "scout-contact-sheet"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-/ #]")


def _cell_name(text: str) -> str:
    """A file name from the downloads listing, safe inside a markdown table cell."""
    return _UNSAFE.sub("_", text)[:120]


def sheet_markdown(jid: str, sheet: ContactSheet) -> str:
    """The artifact: the sheet as an inline PNG, then one row per cell in grid order."""
    data = base64.b64encode(sheet.png).decode("ascii")
    lines = [
        f"### Scout job {jid}: {len(sheet.cells)} frames",
        "",
        f"![Scout frames of job {jid}](data:image/png;base64,{data})",
        "",
        "| cell | file | frame |",
        "|---|---|---|",
    ]
    for index, cell in enumerate(sheet.cells):
        row, column = divmod(index, sheet.columns)
        frame = "" if cell.frame is None else str(cell.frame)
        lines.append(f"| {row + 1}.{column + 1} | {_cell_name(cell.relative)} | {frame} |")
    if sheet.left_off:
        lines.append(f"\n{sheet.left_off} more frames are not on the sheet.")
    if sheet.unreadable:
        names = ", ".join(_cell_name(n) for n in sheet.unreadable[:10])
        lines.append(f"\nCould not read {len(sheet.unreadable)} files: {names}")
    return "\n".join(lines) + "\n"


def _sheet(jid: str, scene_file: str, options: RunOptions) -> tuple[str, str]:
    """The artifact's markdown and the line for the log; raises what went wrong."""
    try:
        require_openimageio()  # before downloading: without it there is nothing to show
        folder = download_folder_for(scene_file)
        output = Path(folder) if folder else None
        with client_for(options) as client, Md5Cache(get_settings().md5_cache_path) as cache:
            fetched = download_job(client, jid, output, cache=cache)
        # Only this job's files: the output folder may hold other jobs' frames too.
        sheet = make_contact_sheet(
            [
                (item.relative_path, target_path(task_folder(task, output), item.relative_path))
                for task in fetched.tasks
                for item in task.files
            ]
        )
    except SheetUnavailable as why:
        return f"Scout job {jid}: {why}\n", f"scout job {jid}: {why}"
    return (
        sheet_markdown(jid, sheet),
        f"scout job {jid}: contact sheet of {len(sheet.cells)} frames ({len(sheet.png)} bytes)",
    )


@task(name="scout-contact-sheet")
def scout_contact_sheet(jid: str, scene_file: str, options: RunOptions) -> str:
    """Show the finished scout job's frames as a contact sheet artifact; never fails the run."""
    logger = get_run_logger()
    try:
        markdown, line = _sheet(jid, scene_file, options)
        create_markdown_artifact(
            markdown, key=ARTIFACT_KEY, description=f"The scout frames of job {jid}"
        )
    except Exception as error:  # a preview: no failure of it may stop the render
        line = f"scout job {jid}: no contact sheet: {' '.join(str(error).split())[:300]}"
        logger.warning(line)
        return line
    logger.info(line)
    return line
