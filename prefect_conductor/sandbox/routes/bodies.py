"""The JSON bodies Conductor's clients send, typed strictly: a key or type they never send is a 400.

Shapes come from ciocore 9.2.0 (``conductor_submit.py:40-65`` for ``POST jobs/``, the uploader
for ``get_upload_urls`` and ``multipart/complete``, ``api_client.py:718-794`` for kills). Every
model forbids unknown keys and coerces nothing, so ``"1"`` is not a number and ``true`` is not
an int. ``parse`` turns any malformed body (not JSON, ``1e400``, a 5,000-digit number, a wrong
type) into one line naming the key, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

BIG = 2**53
"""Bound on every integer: larger ones mean nothing here and would overflow SQLite."""

Count = Annotated[int, Field(strict=True, ge=0, le=BIG)]
StatInt = Annotated[int, Field(strict=True, ge=0, le=2**64)]
"""An ``os.stat`` number: inode and device numbers may use all 64 bits."""
Number = Annotated[float, Field(allow_inf_nan=False)]
Short = Annotated[StrictStr, Field(max_length=4096)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TaskData(Strict):
    command: StrictStr
    frames: Short


class Retry(Strict):
    max_retries: Count


class AutoRetryPolicy(Strict):
    """``{"preempted": {"max_retries": N}}`` (all plugins), ``failed`` too (cioc4d, the docs)."""

    preempted: Retry | None = None
    failed: Retry | None = None


class Notify(Strict):
    emails: list[StrictStr] | None


class UploadFile(Strict):
    """An ``upload_files`` entry: ciocore's md5, local path and raw ``os.stat`` dump."""

    md5: StrictStr | None
    destination: StrictStr
    st_mode: StatInt | None = None
    st_ino: StatInt | None = None
    st_dev: StatInt | None = None
    st_nlink: StatInt | None = None
    st_uid: StatInt | None = None
    st_gid: StatInt | None = None
    st_size: Count | None = None
    st_atime: Number | None = None
    st_mtime: Number | None = None
    st_ctime: Number | None = None


class JobPayload(Strict):
    """``POST jobs/`` (ciocore conductor_submit.py:40-65; the keys are ``evidence.JOB_KEYS``)."""

    instance_type: StrictStr
    project: StrictStr
    tasks_data: list[TaskData]
    output_path: StrictStr
    autoretry_policy: AutoRetryPolicy = AutoRetryPolicy()
    docker_image: StrictStr = ""
    environment: dict[StrictStr, StrictStr] = {}
    job_title: StrictStr = "Unknown job title"
    local_upload: StrictBool = True
    location: StrictStr = ""
    preemptible: StrictBool = False
    metadata: dict[StrictStr, StrictStr] = {}
    priority: Count = 5
    scout_frames: Short = ""
    software_package_ids: list[StrictStr] = []
    max_instances: Count = 0
    chunk_size: Annotated[int, Field(strict=True, ge=1, le=BIG)] = 1
    owner: StrictStr = ""
    notify: Notify | None = None
    upload_files: list[UploadFile] = []
    upload_size: Count = 0


class FileAsk(Strict):
    path: StrictStr
    hash: StrictStr
    size: Count


class UploadUrlsRequest(Strict):
    """``POST /api/v2/files/get_upload_urls``: at most 20 files a request in ciocore."""

    upload_files: list[FileAsk]
    project: StrictStr | None = None


class CompletedPart(Strict):
    partNumber: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    etag: StrictStr


class MultipartComplete(Strict):
    """``POST /api/v2/files/multipart/complete``."""

    uploadID: StrictStr
    hash: StrictStr | None = None
    completedParts: list[CompletedPart]
    project: StrictStr | None = None


class KillJobs(Strict):
    """``PUT jobs_multi``: kill is the only action any client sends."""

    action: StrictStr
    jobids: list[StrictStr]


class KillTasks(Strict):
    """``PUT tasks_multi``: kill is the only action any client sends."""

    action: StrictStr
    jobid: StrictStr
    taskids: list[StrictStr]


Model = TypeVar("Model", bound=BaseModel)


class BodyError(ValueError):
    """A body the sandbox refuses; ``str()`` is one line naming the key."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def load_json(raw: bytes) -> Any:
    """Parse JSON refusing NaN, Infinity, overflowing floats and huge integers (ValueError)."""
    try:
        return json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the body nests too deeply") from None


def parse(model: type[Model], raw: bytes) -> Model:
    """``raw`` as ``model``, or BodyError: ``the body is not JSON`` / ``<key path>: <reason>``."""
    try:
        document = load_json(raw)
    except ValueError as problem:
        raise BodyError(f"the body is not JSON ({str(problem)[:120]})") from None
    try:
        return model.model_validate(document)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise BodyError(f"{where}: {first['msg']}") from None
