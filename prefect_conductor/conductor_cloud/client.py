"""ConductorClient: every Conductor endpoint the submitter uses, over one httpx client.

What it fixes in the reference client (research/conductor-client-facts.md section 6): explicit
connect/read/write/pool timeouts on every call, one pooled connection, retries only of what is
transient (``retry.py``), a typed error per failure that carries method, URL and status but never
a secret, a token refresh on a 401, and a job POST that can never create two jobs: the submission
id is written into the job's metadata, looked up before posting, and looked up again after any
failure that may have reached the server. The job- and task-status shapes we rely on are stated in
``status.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from prefect_conductor import __version__
from prefect_conductor.conductor_cloud.auth import ApiKey, AuthError, TokenManager, api_key_from_env
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.conductor_cloud.retry import RETRY_STATUSES, RetryPolicy, send_with_retries
from prefect_conductor.conductor_cloud.status import SUBMISSION_METADATA_KEY

DEFAULT_URL = "https://dashboard.conductortech.com"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
SUBMIT_ROUNDS = 3


class ConductorError(UserError):
    """A Conductor call failed. Carries method, URL (no query) and status; never a secret."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body[:300]
        super().__init__(message)


class ConductorUnavailable(ConductorError):
    """Conductor could not be reached, or timed out, after the retries."""


class NotFoundError(ConductorError):
    """404: the thing asked for does not exist."""


class RequestRejected(ConductorError):
    """Another 4xx: Conductor refused the request as made; retrying cannot help."""


class ServerError(ConductorError):
    """5xx (or 429) after the retries ran out."""


class AmbiguousSubmitError(ConductorError):
    """The job POST may or may not have reached Conductor, and looking it up did not tell."""


@dataclass(frozen=True)
class UploadRequest:
    """One file in a ``get_upload_urls`` request."""

    path: str
    hash: str
    size: int


@dataclass(frozen=True)
class SinglePartUrl:
    file_path: str
    file_size: int
    url: str


@dataclass(frozen=True)
class MultiPartUrl:
    upload_id: str
    file_path: str
    md5: str
    part_size: int
    file_size: int
    parts: tuple[tuple[int, str], ...]


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


def _without_query(url: str | httpx.URL) -> str:
    return str(httpx.URL(str(url)).copy_with(query=None, fragment=None))


def _message_of(response: httpx.Response) -> str:
    """The server's own message from a JSON error body, else a short text excerpt."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "body"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(body)[:200]


class ConductorClient:
    """Talks to Conductor (or the sandbox) at ``url`` with an API key."""

    def __init__(
        self,
        url: str | None = None,
        api_key: ApiKey | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        policy: RetryPolicy | None = None,
        token_cache_dir: Path | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get("CONDUCTOR_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else api_key_from_env()
        if key is None:
            raise AuthError(
                "no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH, or name"
                " a Secret block in credentials_block"
            )
        self.policy = policy or RetryPolicy()
        self.http = httpx.Client(
            timeout=timeout or DEFAULT_TIMEOUT,
            headers={"User-Agent": user_agent or f"prefect-conductor/{__version__}"},
            follow_redirects=False,
        )
        self.tokens = TokenManager(self.url, key, self.http, cache_dir=token_cache_dir)

    def __repr__(self) -> str:
        return f"ConductorClient(url={self.url!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ConductorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport --------------------------------------------------------------------------------

    def _endpoint(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        headers = {"Authorization": f"Bearer {self.tokens.token()}", "Accept": "application/json"}
        return self.http.build_request(method, self._endpoint(path), headers=headers, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries and one token refresh on 401; raise a typed error on failure."""
        url = self._endpoint(path)
        for attempt in (1, 2):
            try:
                response = send_with_retries(
                    self.http, lambda: self._request(method, path, **kwargs), self.policy
                )
            except httpx.TransportError as error:
                raise ConductorUnavailable(
                    f"cannot reach Conductor at {self.url}: {type(error).__name__}",
                    method=method,
                    url=_without_query(url),
                ) from None
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            break
        if response.is_success:
            return response
        raise self._error(method, url, response)

    def _error(self, method: str, url: str, response: httpx.Response) -> UserError:
        status = response.status_code
        where = f"{method} {_without_query(url)}"
        detail = _message_of(response)
        kwargs: dict[str, Any] = {
            "method": method,
            "url": _without_query(url),
            "status": status,
            "body": response.text,
        }
        if status in (401, 403):
            return AuthError(f"Conductor refused {where} (HTTP {status}): check the API key")
        if status == 404:
            return NotFoundError(f"{where}: not found (HTTP 404)", **kwargs)
        if status in RETRY_STATUSES:
            return ServerError(f"{where}: Conductor answered HTTP {status}: {detail}", **kwargs)
        return RequestRejected(f"{where}: rejected (HTTP {status}): {detail}", **kwargs)

    def _data(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise ServerError(
                f"{response.request.method} {_without_query(response.request.url)}: the answer is"
                " not JSON",
                status=response.status_code,
            ) from None
        return body.get("data", body) if isinstance(body, dict) else body

    # catalogue --------------------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        return list(self._data(self._call("GET", "api/v1/projects/")))

    def instance_types(self, filter: str = "") -> list[dict[str, Any]]:
        response = self._call("GET", "api/v1/instance-types", params={"filter": filter})
        return list(self._data(response))

    def packages(self) -> list[dict[str, Any]]:
        return list(self._data(self._call("GET", "api/v1/ee/packages", params={"all": "true"})))

    def extra_environment(self) -> list[dict[str, Any]]:
        response = self._call("GET", "api/v1/integrations/env-vars-configs")
        return list(self._data(response) or [])

    # uploads ----------------------------------------------------------------------------------

    def get_upload_urls(self, files: Sequence[UploadRequest], project: str | None) -> UploadUrls:
        """Ask which files Conductor lacks; unknown keys in the answer (kmsKeyName) are fine."""
        body = {
            "upload_files": [{"path": f.path, "hash": f.hash, "size": f.size} for f in files],
            "project": project,
        }
        response = self._call("POST", "/api/v2/files/get_upload_urls", json=body)
        if response.status_code == 204 or not response.content:
            return UploadUrls()
        data = response.json()
        single = tuple(
            SinglePartUrl(str(u["filePath"]), int(u["fileSize"]), str(u["preSignedURL"]))
            for u in data.get("singlePartURLs") or []
        )
        multi = tuple(
            MultiPartUrl(
                upload_id=str(u["uploadID"]),
                file_path=str(u["filePath"]),
                md5=str(u.get("md5", "")),
                part_size=int(u["partSize"]),
                file_size=int(u["fileSize"]),
                parts=tuple((int(p["partNumber"]), str(p["url"])) for p in u["parts"]),
            )
            for u in data.get("multiPartURLs") or []
        )
        return UploadUrls(single, multi, data.get("kmsKeyName"))

    def complete_multipart(
        self, upload_id: str, md5: str, parts: Sequence[tuple[int, str]], project: str | None
    ) -> None:
        body = {
            "uploadID": upload_id,
            "hash": md5,
            "completedParts": [{"partNumber": n, "etag": etag.strip('"')} for n, etag in parts],
            "project": project,
        }
        self._call("POST", "/api/v2/files/multipart/complete", json=body)

    # jobs -------------------------------------------------------------------------------------

    def dashboard_url(self, jid: str) -> str:
        return f"{self.url}/job/{jid}"

    def find_job(self, submission_id: str) -> dict[str, Any] | None:
        """The job carrying this submission id in its metadata, or None.

        Asks with the metadata filter (see status.py) and checks the metadata itself, so a server
        that ignores the filter still gives a right answer.
        """
        response = self._call(
            "GET",
            "api/v1/jobs",
            params={"filter": f"metadata.{SUBMISSION_METADATA_KEY}=eq:{submission_id}"},
        )
        jobs = [
            job
            for job in self._data(response) or []
            if (job.get("metadata") or {}).get(SUBMISSION_METADATA_KEY) == submission_id
        ]
        return min(jobs, key=lambda job: str(job.get("jid"))) if jobs else None

    def list_jobs(
        self, first_jid: int | None = None, last_jid: int | None = None
    ) -> list[dict[str, Any]]:
        parts = []
        if first_jid is not None:
            parts.append(f"jid_gt_{first_jid - 1:05d}")
        if last_jid is not None:
            parts.append(f"jid_lt_{last_jid + 1:05d}")
        params = {"filter": ",".join(parts)} if parts else {}
        return list(self._data(self._call("GET", "api/v1/jobs", params=params)) or [])

    def get_job(self, jid: str) -> dict[str, Any]:
        return dict(self._data(self._call("GET", f"api/v1/jobs/{jid}")))

    def get_tasks(self, jid: str) -> list[dict[str, Any]]:
        return list(self._data(self._call("GET", f"api/v1/jobs/{jid}/tasks")) or [])

    def kill_jobs(self, jids: Sequence[str]) -> None:
        self._call("PUT", "jobs_multi", json={"action": "kill", "jobids": list(jids)})

    def _found(self, job: Mapping[str, Any], submission_id: str) -> SubmittedJob:
        jid = str(job["jid"])
        return SubmittedJob(
            jid=jid,
            uri=f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=submission_id,
            created=False,
        )

    def submit_job(self, payload: Mapping[str, Any], submission_id: str) -> SubmittedJob:
        """Post the job once for ``submission_id``, however the network behaves.

        1. Look the id up: a retried step whose first try got through finds its job.
        2. POST with no transport-level retry (the POST is not idempotent on Conductor's side).
        3. After a failure that may have reached the server (a dropped connection, a timeout,
           a 5xx), look the id up again; post again only when Conductor has no such job.
        A connection that was refused never reached the server and is simply retried.
        """
        existing = self.find_job(submission_id)
        if existing is not None:
            return self._found(existing, submission_id)
        body = dict(payload)
        body["metadata"] = {
            **dict(payload.get("metadata") or {}),
            SUBMISSION_METADATA_KEY: submission_id,
        }
        url = self._endpoint("jobs/")
        last_problem = "no answer"
        for round_number in range(1, SUBMIT_ROUNDS + 1):
            try:
                response = self.http.send(self._request("POST", "jobs/", json=body))
            except httpx.ConnectError:
                last_problem = "connection refused"
            except httpx.TransportError as error:
                last_problem = type(error).__name__
                found = self._lookup_after_ambiguity(submission_id)
                if found is not None:
                    return found
            else:
                if response.status_code == 401 and round_number == 1:
                    self.tokens.invalidate()
                    continue
                if response.status_code in (200, 201, 204):
                    return self._created(response, submission_id)
                if response.status_code not in RETRY_STATUSES:
                    raise self._error("POST", url, response)
                last_problem = f"HTTP {response.status_code}"
                found = self._lookup_after_ambiguity(submission_id)
                if found is not None:
                    return found
            time.sleep(min(self.policy.max_delay, self.policy.base_delay * 2**round_number))
        raise AmbiguousSubmitError(
            f"POST {url}: could not submit after {SUBMIT_ROUNDS} tries ({last_problem}); no job"
            f" with submission id {submission_id!r} exists, so it is safe to run again",
            method="POST",
            url=url,
        )

    def _lookup_after_ambiguity(self, submission_id: str) -> SubmittedJob | None:
        try:
            found = self.find_job(submission_id)
        except ConductorError as error:
            raise AmbiguousSubmitError(
                f"the job POST may have reached Conductor and looking it up failed ({error});"
                f" check the dashboard for submission id {submission_id!r} before submitting again"
            ) from None
        return self._found(found, submission_id) if found is not None else None

    def _created(self, response: httpx.Response, submission_id: str) -> SubmittedJob:
        jid: str | None = None
        uri = ""
        if response.content:
            try:
                body = response.json()
                jid = str(body.get("jobid") or body.get("jid") or "") or None
                uri = str(body.get("uri") or "")
            except ValueError:
                jid = None
        if jid is None:  # a 204, or a body without the id: the lookup knows it
            found = self._lookup_after_ambiguity(submission_id)
            if found is None:
                raise AmbiguousSubmitError(
                    f"Conductor accepted the job but named no id, and submission id"
                    f" {submission_id!r} is not listed yet"
                )
            return SubmittedJob(found.jid, found.uri, found.dashboard_url, submission_id, True)
        return SubmittedJob(
            jid=jid,
            uri=uri or f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=submission_id,
            created=True,
        )
