"""What the Conductor client hands back: small frozen records, parsed from Conductor's JSON.

Kept apart from the client so that code reading these (uploads, tasks) needs no HTTP import.
Field names on the wire are in ``client.py`` next to the requests that produce them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MultiPartUrl", "SinglePartUrl", "SubmittedJob", "UploadRequest", "UploadUrls"]


@dataclass(frozen=True)
class UploadRequest:
    """One file in a ``get_upload_urls`` request (``hash`` is the base64 md5)."""

    path: str
    hash: str
    size: int


@dataclass(frozen=True)
class SinglePartUrl:
    """A signed URL for one whole file."""

    file_path: str
    file_size: int
    url: str


@dataclass(frozen=True)
class MultiPartUrl:
    """A multipart upload: one signed URL per part, closed by ``multipart/complete``."""

    upload_id: str
    file_path: str
    md5: str
    part_size: int
    file_size: int
    parts: tuple[tuple[int, str], ...]  # (part number, signed URL)


@dataclass(frozen=True)
class UploadUrls:
    """Which files Conductor wants, and where to PUT them. Files not listed it already has."""

    single_part: tuple[SinglePartUrl, ...] = ()
    multi_part: tuple[MultiPartUrl, ...] = ()
    kms_key_name: str | None = None


@dataclass(frozen=True)
class SubmittedJob:
    """A job Conductor holds for a submission id; ``created`` is False when it was found."""

    jid: str
    uri: str
    dashboard_url: str
    submission_id: str
    created: bool
