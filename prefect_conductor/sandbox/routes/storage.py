"""Uploads: which files the server lacks, signed storage URLs, and multipart completion.

``POST /api/v2/files/get_upload_urls`` leaves out every file whose md5 is already stored (the
server-side dedupe a client relies on) and answers 204 when nothing is needed. Other files get a
single signed URL, or, above ``multipart_threshold`` bytes, one URL per ``part_size`` part.

A signed URL is ``/_storage/<grant>?expires=<unix>&signature=<hmac>``, the sandbox's own route
standing for the cloud bucket (not a Conductor endpoint, see ``evidence.py``): it needs no bearer
token (a request that carries one is accepted but counted, because our uploader must never send it),
expires after an hour, and is bound to the md5 and size it was granted for. Its signature is
checked before a byte of the body is read, and a body longer than the size it was signed for is
refused (413) by ``Content-Length`` or as soon as a chunked body passes it. A PUT is streamed to
``incoming/``, hashed on the way, checked against ``Content-MD5`` when present (400 on mismatch)
and, for a whole file, against the granted md5 and size; only then is it renamed to
``files/<md5 hex>``. Every name on disk comes from a digest or an id the server made, never from a
client's path, so no request can write outside the data folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.routes import bodies
from prefect_conductor.sandbox.routes.tokens import error

GRANT_SECONDS = 3600
COPY_CHUNK = 1024 * 1024
MAX_PARTS = 10_000
"""Most parts one multipart upload may have (the cloud stores' own limit)."""


def decode_md5(value: object) -> bytes | None:
    """The 16-byte digest of a base64 md5 as Conductor writes it, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == 16 else None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Storage:
    """The upload endpoints of one sandbox."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.store = context.store

    # signed URLs --------------------------------------------------------------------------

    def _signed_url(self, request: Request, kind: str, md5: str, size: int, **extra: Any) -> str:
        grant = secrets.token_urlsafe(16)
        expires = int(time.time()) + GRANT_SECONDS
        self.store.execute(
            "INSERT INTO grants (token, kind, md5, size, upload_id, part_number, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            grant,
            kind,
            md5,
            size,
            extra.get("upload_id"),
            extra.get("part_number"),
            expires,
        )
        signature = self.context.sign(f"{grant}:{expires}")
        base = str(request.base_url).rstrip("/")
        return f"{base}/_storage/{grant}?expires={expires}&signature={signature}"

    def _grant(self, request: Request) -> Any:
        """The grant a signed URL stands for, or an error response."""
        grant = request.path_params["grant"]
        expires = request.query_params.get("expires", "")
        signature = request.query_params.get("signature", "")
        if not hmac.compare_digest(signature, self.context.sign(f"{grant}:{expires}")):
            return error(403, "the storage URL's signature does not match")
        if not expires.isdigit() or int(expires) < time.time():
            return error(403, "the storage URL has expired")
        rows = self.store.query("SELECT * FROM grants WHERE token = ?", grant)
        return rows[0] if rows else error(403, "the storage URL grants nothing")

    # endpoints ----------------------------------------------------------------------------

    async def upload_urls(self, request: Request) -> Response:
        """``POST /api/v2/files/get_upload_urls``: signed URLs for the files not stored yet."""
        try:
            body = bodies.parse(bodies.UploadUrlsRequest, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        wanted = [(f.path, f.hash, f.size) for f in body.upload_files]
        for path, md5, _size in wanted:
            if decode_md5(md5) is None:
                return error(400, f"upload_files: the hash of {path[:200]!r} is not a base64 md5")
        threshold = int(self.store.setting("multipart_threshold"))
        part_size = int(self.store.setting("part_size"))
        single: list[dict[str, Any]] = []
        multi: list[dict[str, Any]] = []
        for path, md5, size in wanted:
            if self.store.has_upload(md5):
                continue
            if size <= threshold:
                url = self._signed_url(request, "single", md5, size)
                single.append({"filePath": path, "fileSize": size, "preSignedURL": url})
                continue
            count = max(1, -(-size // part_size))
            if count > MAX_PARTS:
                return error(400, f"upload_files: {path[:200]!r} needs over {MAX_PARTS} parts")
            upload_id = secrets.token_hex(12)
            self.store.execute(
                "INSERT INTO multipart (upload_id, md5, size, part_size, parts) VALUES (?,?,?,?,?)",
                upload_id,
                md5,
                size,
                part_size,
                count,
            )
            parts = [
                {
                    "partNumber": n,
                    "url": self._signed_url(
                        request, "part", md5, size, upload_id=upload_id, part_number=n
                    ),
                }
                for n in range(1, count + 1)
            ]
            multi.append(
                {
                    "uploadID": upload_id,
                    "filePath": path,
                    "md5": md5,
                    "partSize": part_size,
                    "fileSize": size,
                    "parts": parts,
                }
            )
        if not single and not multi:
            return Response(status_code=204)
        return JSONResponse({"singlePartURLs": single, "multiPartURLs": multi})

    async def put(self, request: Request) -> Response:
        """``PUT /_storage/<grant>``: a whole file or one part, checked before it is kept."""
        grant = self._grant(request)
        if isinstance(grant, Response):
            return grant
        limit = self._signed_size(grant)
        declared = request.headers.get("content-length", "").strip()
        if declared and not (declared.isdigit() and int(declared[:19]) <= limit):
            return error(413, f"the body is over the {limit} bytes this URL was signed for")
        fd, name = tempfile.mkstemp(dir=self.context.incoming_dir)
        temp = Path(name)
        try:
            digest = hashlib.md5()
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:  # a chunked body: stop reading past the signed size
                        return error(413, f"the body is over the {limit} bytes it was signed for")
                    digest.update(chunk)
                    out.write(chunk)
            claimed = request.headers.get("content-md5")
            if claimed is not None and decode_md5(claimed.strip()) != digest.digest():
                return error(400, "Content-MD5 does not match the body")
            etag = {"ETag": f'"{digest.hexdigest()}"'}
            if grant["kind"] == "single":
                if b64(digest.digest()) != grant["md5"] or size != grant["size"]:
                    return error(400, "the body does not match the md5 and size it was granted for")
                self._keep(temp, digest.digest(), size)
                return Response(status_code=200, headers=etag)
            folder = self.context.parts_dir / str(grant["upload_id"])
            folder.mkdir(exist_ok=True)
            os.replace(temp, folder / f"{int(grant['part_number']):05d}")
            return Response(status_code=200, headers=etag)
        finally:
            temp.unlink(missing_ok=True)

    def _signed_size(self, grant: Any) -> int:
        """The most bytes a signed URL takes: the file's size, or its part's size."""
        if grant["kind"] == "single":
            return int(grant["size"])
        rows = self.store.query(
            "SELECT part_size FROM multipart WHERE upload_id = ?", grant["upload_id"]
        )
        part_size = int(rows[0]["part_size"]) if rows else 0
        before = (int(grant["part_number"]) - 1) * part_size
        return max(0, min(part_size, int(grant["size"]) - before))

    def _keep(self, temp: Path, digest: bytes, size: int) -> None:
        """Move a verified body to ``files/<md5 hex>`` (atomic) and record the upload."""
        os.replace(temp, self.context.blob_path(digest))
        self.store.add_upload(b64(digest), size)

    async def complete(self, request: Request) -> Response:
        """``POST /api/v2/files/multipart/complete``: assemble the parts, check the md5."""
        try:
            body = bodies.parse(bodies.MultipartComplete, await request.body())
        except bodies.BodyError as problem:
            return error(400, str(problem))
        upload_id = body.uploadID
        given = {p.partNumber: p.etag for p in body.completedParts}
        rows = self.store.query("SELECT * FROM multipart WHERE upload_id = ?", upload_id)
        if not rows:
            return error(404, "uploadID: no such upload")
        upload = rows[0]
        if body.hash not in (None, upload["md5"]):
            return error(400, "hash does not match the md5 the upload was granted for")
        folder = self.context.parts_dir / upload_id
        if self.store.has_upload(upload["md5"]) and not folder.exists():
            return JSONResponse({"status": "complete"})  # a retried completion
        expected = list(range(1, int(upload["parts"]) + 1))
        if sorted(given) != expected:
            return error(400, f"expected parts 1..{upload['parts']}, got {sorted(given)}")
        paths = [folder / f"{number:05d}" for number in expected]
        missing = [n for n, path in zip(expected, paths, strict=True) if not path.exists()]
        if missing:
            return error(400, f"parts never uploaded: {missing}")
        fd, name = tempfile.mkstemp(dir=self.context.incoming_dir)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                whole, size, bad = _concatenate(paths, out, given)
            if bad:
                return error(400, f"the ETag of part {bad} does not match its body")
            if b64(whole) != upload["md5"] or size != upload["size"]:
                return error(400, "the assembled file does not match its md5 and size")
            self._keep(temp, whole, size)
        finally:
            temp.unlink(missing_ok=True)
        for path in paths:
            path.unlink(missing_ok=True)
        folder.rmdir()
        return JSONResponse({"status": "complete"})


def _concatenate(
    paths: Iterable[Path], out: Any, etags: dict[int, str]
) -> tuple[bytes, int, int | None]:
    """Copy the parts into ``out``; the whole md5, the size, and the first part whose ETag lies."""
    whole = hashlib.md5()
    size = 0
    for number, path in enumerate(paths, start=1):
        part = hashlib.md5()
        with path.open("rb") as handle:
            while chunk := handle.read(COPY_CHUNK):
                whole.update(chunk)
                part.update(chunk)
                out.write(chunk)
                size += len(chunk)
        etag = etags.get(number, "").strip().strip('"')
        if etag and etag != part.hexdigest():
            return whole.digest(), size, number
    return whole.digest(), size, None
