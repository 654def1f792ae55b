"""The parameters of a ``render-submit`` deployment run, made from a job file.

``prefect deployment run render-submit/conductor --params "$(prefect-conductor params job.yaml)"``
starts the same submission ``prefect-conductor submit job.yaml`` runs locally. The job file is
checked here (one-line errors), paths are made absolute (the worker has another working
directory; it must see the same paths), and only fields that differ from their defaults are
written, so the run's Parameters tab stays short. No secret is ever written: the credentials are
a block's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.job.loaders import load_job
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions, SceneSource


def deployment_parameters(
    job_file: Path,
    *,
    scene: Path | None = None,
    project: Path | None = None,
    credentials_block: str = "",
    preview: bool = False,
) -> str:
    """``{"job": ..., "scene": ..., "options": ...}`` as one line of JSON."""
    job = load_job(job_file)
    if project is not None:
        source = SceneSource(project_path=str(project.resolve()))
    else:
        source = SceneSource(export_path=str(Path(scene or "").resolve()))
    options = RunOptions(credentials_block=credentials_block, preview=preview)
    document: dict[str, Any] = {
        "job": job.model_dump(mode="json", exclude_defaults=True),
        "scene": source.model_dump(mode="json", exclude_defaults=True),
        "options": options.model_dump(mode="json", exclude_defaults=True),
    }
    return json.dumps(document)
