"""What a person reads about a submission: the upload list as a table, the jobs in short.

The exact request bodies stay available (``preview --json``, the flow's return value); this module
renders them for reading. The upload list is one row per file, and a frame sequence (``fileseq``)
is one row however many frames it has, so 1,000 texture frames read as ``tex.1001-2000#.exr``. The
``upload_files`` entries (ten ``st_*`` fields per file) are summarised, not repeated, and long
task commands are wrapped.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import fileseq

from prefect_conductor.conductor_cloud.submission.payload import UploadEntry

WRAP = 96
MAX_TASKS_SHOWN = 20
SUMMARY_KEYS = (
    "job_title",
    "project",
    "instance_type",
    "preemptible",
    "priority",
    "chunk_size",
    "max_instances",
    "output_path",
    "scout_frames",
    "software_package_ids",
    "owner",
)


def human_size(size: int) -> str:
    """Bytes as people say them: 512 B, 3.4 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def upload_rows(uploads: Sequence[UploadEntry]) -> list[dict[str, Any]]:
    """One row per file or frame sequence: path, files, size, md5 (of a single file)."""
    by_path = {entry.path: entry for entry in uploads}
    rows: list[dict[str, Any]] = []
    for sequence in fileseq.findSequencesInList(list(by_path)):
        members = [by_path[str(path)] for path in sequence]
        single = len(members) == 1
        rows.append(
            {
                "path": members[0].path if single else str(sequence),
                "files": len(members),
                "size": human_size(sum(entry.size for entry in members)),
                "md5": members[0].md5 if single else f"({len(members)} files)",
            }
        )
    return sorted(rows, key=lambda row: str(row["path"]))


def upload_table_text(uploads: Sequence[UploadEntry]) -> str:
    """The upload rows as aligned plain-text columns."""
    rows = upload_rows(uploads)
    if not rows:
        return "  (no files)"
    width = max(len(str(row["path"])) for row in rows)
    size_width = max(len(str(row["size"])) for row in rows)
    return "\n".join(
        f"  {row['path']:<{width}}  {row['size']:>{size_width}}  {row['md5']}" for row in rows
    )


def upload_table_markdown(uploads: Sequence[UploadEntry]) -> str:
    """The upload rows as a Markdown table (the Prefect UI renders it)."""
    lines = ["| path | files | size | md5 |", "|---|---:|---:|---|"]
    for row in upload_rows(uploads):
        path = str(row["path"]).replace("|", "\\|")
        lines.append(f"| `{path}` | {row['files']} | {row['size']} | `{row['md5']}` |")
    return "\n".join(lines)


def wrapped(text: str, indent: str = "      ") -> str:
    """A long command broken at spaces onto indented lines (never inside a word)."""
    return textwrap.fill(
        text,
        width=WRAP,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def job_text(step: str, body: Mapping[str, Any]) -> str:
    """One job's body in short: the settings that matter, environment names, wrapped tasks."""
    lines = [f"Job '{step}': POST jobs/"]
    for key in SUMMARY_KEYS:
        if key in body and body[key] not in ("", None, [], {}):
            lines.append(f"  {key}: {body[key]}")
    environment = body.get("environment") or {}
    if environment:
        lines.append(f"  environment: {', '.join(sorted(environment))}")
    uploads = body.get("upload_files") or []
    lines.append(f"  upload_files: {len(uploads)} files, {human_size(body.get('upload_size', 0))}")
    tasks = body.get("tasks_data") or []
    lines.append(f"  tasks: {len(tasks)}")
    for task in tasks[:MAX_TASKS_SHOWN]:
        lines.append(f"    frames {task['frames']}:")
        lines.append(wrapped(str(task["command"])))
    if len(tasks) > MAX_TASKS_SHOWN:
        lines.append(f"    ... {len(tasks) - MAX_TASKS_SHOWN} more tasks (--json shows all)")
    return "\n".join(lines)


def job_markdown(step: str, body: Mapping[str, Any]) -> str:
    """One job's body for the UI: a settings table and the task commands, wrapped."""
    lines = [f"### POST jobs/ ({step})", "", "| setting | value |", "|---|---|"]
    for key in SUMMARY_KEYS:
        if key in body:
            lines.append(f"| {key} | `{body[key]}` |")
    environment = body.get("environment") or {}
    lines.append(f"| environment | {', '.join(sorted(environment)) or '(none)'} |")
    lines.append(f"| upload_size | {human_size(body.get('upload_size', 0))} |")
    tasks = body.get("tasks_data") or []
    lines += ["", f"{len(tasks)} tasks:", "", "```text"]
    for task in tasks[:MAX_TASKS_SHOWN]:
        lines.append(f"frames {task['frames']}:")
        lines.append(wrapped(str(task["command"]), indent="  "))
    if len(tasks) > MAX_TASKS_SHOWN:
        lines.append(f"... {len(tasks) - MAX_TASKS_SHOWN} more tasks")
    lines.append("```")
    return "\n".join(lines)


def payload_markdown(
    bodies: Mapping[Any, Mapping[str, Any]], uploads: Sequence[UploadEntry]
) -> str:
    """The payload artifact: each job in short, then one upload table shared by the jobs."""
    sections = [job_markdown(str(step), body) for step, body in bodies.items()]
    total = human_size(sum(entry.size for entry in uploads))
    sections.append(
        f"### Uploads ({len(uploads)} files, {total})\n\n" + upload_table_markdown(uploads)
    )
    return "\n\n".join(sections)
