"""The cost line ``preview`` shows beside Frames Info, from a frame time an earlier run measured.

An earlier run of the same shot (same project and title) keeps its measured frame time in a
Prefect Variable (``cost/estimate.py``), and the studio's prices are the Variable
``conductor-prices``. ``preview`` never starts a server and never imports Prefect: it asks the
Prefect API named by ``PREFECT_API_URL`` (else the CLI's local server, only if it already runs)
with plain HTTP and a short timeout, and shows nothing when no server answers or no frame time
was kept.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from prefect_conductor.conductor_cloud.cost.estimate import estimate_job, frame_time_variable
from prefect_conductor.conductor_cloud.cost.prices import PRICES_VARIABLE, parse_prices
from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.conductor_cloud.job.model import ConductorJob

TIMEOUT_SECONDS = 3.0


def prefect_api() -> str | None:
    """The Prefect API to ask: ``PREFECT_API_URL``, else the local server if it runs now."""
    named = os.environ.get("PREFECT_API_URL", "").strip()
    if named:
        return named.rstrip("/")
    from prefect_conductor.local_server.server import LocalServer

    try:
        state = LocalServer.for_user().running()
    except (OSError, SubmitterError):
        return None
    return state.api_url if state is not None else None


def _headers() -> dict[str, str]:
    key = os.environ.get("PREFECT_API_KEY", "").strip()
    if key:
        return {"Authorization": f"Bearer {key}"}
    auth = os.environ.get("PREFECT_API_AUTH_STRING", "").strip()
    if auth:
        return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    return {}


def _variable(http: httpx.Client, name: str) -> Any:
    """The Variable's value; None when it does not exist."""
    answer = http.get(f"variables/name/{quote(name, safe='')}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json().get("value")


def estimate_line(job: ConductorJob, task_frames: Sequence[int]) -> str:
    """``Estimate: ...`` for a job whose full-job tasks hold ``task_frames`` frames each, from
    the shot's kept frame time; empty when there is none or no Prefect server answers."""
    api = prefect_api()
    if api is None:
        return ""
    try:
        with httpx.Client(base_url=api + "/", headers=_headers(), timeout=TIMEOUT_SECONDS) as http:
            kept = _variable(http, frame_time_variable(job.project, job.title))
            if not isinstance(kept, dict) or not isinstance(kept.get("frame_seconds"), int | float):
                return ""
            raw_prices = _variable(http, PRICES_VARIABLE)
    except (httpx.HTTPError, ValueError):
        return ""
    note = ""
    try:
        prices = parse_prices(raw_prices) if raw_prices is not None else {}
    except SubmitterError as problem:
        prices, note = {}, str(problem)
    measured_on = str(kept.get("instance_type") or "")
    if measured_on and measured_on != job.instance_type:
        note = "; ".join(filter(None, [note, f"frame time measured on {measured_on}"]))
    estimate = estimate_job(
        task_frames=list(task_frames),
        frame_tile_seconds=float(kept["frame_seconds"]) / job.tiles,
        measured_tasks=int(kept.get("measured_tasks") or 0),
        resolution_seconds=None,
        mean_measured_seconds=None,
        instance_type=job.instance_type,
        preemptible=job.preemptible,
        max_instances=job.max_instances,
        price=prices.get(job.instance_type),
        note=note,
        source="earlier run's scout",
    )
    error = kept.get("relative_error")
    when = str(kept.get("measured_at") or "an earlier run")[:25]
    bound = f", about ±{float(error) * 100:.0f}%" if isinstance(error, int | float) else ""
    seconds = float(kept["frame_seconds"])
    return f"{estimate.line()} (frame time {seconds:.2f} s measured {when}{bound})"
