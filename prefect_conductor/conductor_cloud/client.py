"""ConductorClient: every Conductor endpoint the submitter uses, over one httpx client.

What it fixes in the reference client (research/conductor-client-facts.md section 6): explicit
connect/read/write/pool timeouts on every call, one pooled connection, retries only of what is
transient (``retry.py``), a typed error per failure that carries method, URL and status but never
a secret, a token refresh on a 401, and a job POST that does not create two jobs: the submission
id is written into the job's metadata, looked up before posting, and looked up again after any
failure that may have reached the server (see :meth:`ConductorClient.submit_job`). The job- and
task-status shapes we rely on are stated in ``status.py``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from prefect_conductor import __version__
from prefect_conductor.conductor_cloud.auth import (
    EXCHANGE_PATH,
    ApiKey,
    ApiKeyError,
    AuthError,
    TokenManager,
    api_key_from_env,
)
from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.retry import (
    NEVER_SENT_ERRORS,
    RETRY_STATUSES,
    RetryPolicy,
    backoff_delay,
    redacted_url,
    send_with_retries,
)
from prefect_conductor.conductor_cloud.settings import DEFAULT_CONDUCTOR_URL, get_settings
from prefect_conductor.conductor_cloud.status import SUBMISSION_METADATA_KEY

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AmbiguousSubmitError",
    "AuthError",
    "ConductorClient",
    "ConductorError",
    "ConductorUnavailable",
    "MultiPartUrl",
    "NotFoundError",
    "RequestRejected",
    "ServerError",
    "SinglePartUrl",
    "SubmittedJob",
    "UploadRequest",
    "UploadUrls",
]

DEFAULT_URL = DEFAULT_CONDUCTOR_URL
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
SUBMIT_ROUNDS = 3
"""How many times one ``submit_job`` call may POST, each after a lookup found no job."""

IN_FLIGHT_STATUSES = frozenset({502, 504})
"""A proxy gave up waiting for the backend, which may still be storing the job."""

IN_FLIGHT_ERRORS: tuple[type[Exception], ...] = (httpx.ReadTimeout, httpx.WriteTimeout)
"""We gave up waiting; the server may still be storing the job."""


class ConductorError(ServiceError):
    """A Conductor call failed. Carries method, URL (no query) and status; never a secret."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        super().__init__(
            message,
            method=method,
            url=redacted_url(url) if url else "",
            status=status,
            body=body,
        )


class ConductorUnavailable(ConductorError):
    """Conductor could not be reached, or timed out, after the retries."""

    transient = True


class NotFoundError(ConductorError):
    """404: the thing asked for does not exist."""


class RequestRejected(ConductorError):
    """Another 4xx: Conductor refused the request as made; retrying cannot help."""


class ServerError(ConductorError):
    """5xx (or 408/425/429) after the retries ran out."""

    transient = True


class AmbiguousSubmitError(ConductorError):
    """The job POST may have reached Conductor, and looking it up could not tell.

    Transient: the submit step looks its submission id up again before it posts anything.
    """

    transient = True


@dataclass(frozen=True)
class UploadRequest:
    """One file in a ``get_upload_urls`` request (``hash`` is the base64 md5)."""

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


def _one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


def _message_of(response: httpx.Response) -> str:
    """The server's own message from a JSON error body, else a short text excerpt."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text)
    if isinstance(body, dict):
        for key in ("message", "error", "detail", "body"):
            if isinstance(body.get(key), str):
                return _one_line(str(body[key]))
    return _one_line(str(body))


def _reason(error: Exception) -> str:
    """``ConnectError: [Errno 111] Connection refused``: the class, and its text when short."""
    text = _one_line(str(error), 120)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _checked_url(url: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(
            f"Conductor URL {redacted_url(url)!r}: expected http(s)://host[:port]"
            " (check CONDUCTOR_URL)"
        )
    return url.rstrip("/")


class ConductorClient:
    """Talks to Conductor (or the sandbox) at ``url`` with an API key.

    ``submit_settle`` is how long, after a job POST that may still be in flight (a read timeout,
    a 502/504), the client keeps looking for the job before it dares to post again. By default
    one more read timeout (within the policy's deadline): a server that took longer than that in
    all has almost certainly given up on the request. Posting again sooner risks a second job.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: ApiKey | None = None,
        *,
        timeout: httpx.Timeout | None = None,
        policy: RetryPolicy | None = None,
        token_cache_dir: Path | None = None,
        user_agent: str | None = None,
        submit_settle: float | None = None,
    ) -> None:
        self.url = _checked_url(url or get_settings().conductor_url)
        key = api_key if api_key is not None else api_key_from_env()
        if key is None:
            raise ApiKeyError(
                "no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH, or name"
                " a Secret block in credentials_block"
            )
        self.policy = policy or RetryPolicy()
        self.timeout = timeout or DEFAULT_TIMEOUT
        read = self.timeout.read if self.timeout.read is not None else 60.0
        self.submit_settle = (
            submit_settle if submit_settle is not None else min(self.policy.deadline, read)
        )
        self.http = httpx.Client(
            timeout=self.timeout,
            headers={"User-Agent": user_agent or f"prefect-conductor/{__version__}"},
            follow_redirects=False,
        )
        self.tokens = TokenManager(
            self.url, key, self.http, cache_dir=token_cache_dir, policy=self.policy
        )

    def __repr__(self) -> str:
        return f"ConductorClient(url={self.url!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ConductorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dashboard_url(self, jid: str) -> str:
        return f"{self.url}/job/{jid}"

    # transport --------------------------------------------------------------------------------

    def _endpoint(self, path: str) -> str:
        return f"{self.url}/{path.lstrip('/')}"

    def _scrub(self, text: str) -> str:
        return self.tokens.redact(text)

    def _unavailable(self, method: str, url: str, error: Exception) -> ConductorUnavailable:
        return ConductorUnavailable(
            self._scrub(f"cannot reach Conductor at {self.url}: {_reason(error)}"),
            method=method,
            url=url,
        )

    def _bearer(self) -> str:
        """A token, with the exchange's failures turned into the client's typed errors."""
        try:
            return self.tokens.token()
        except httpx.TransportError as error:
            raise self._unavailable("POST", self._endpoint(EXCHANGE_PATH), error) from None
        except AuthError as error:
            if error.status is not None and (error.status in RETRY_STATUSES or error.status >= 500):
                raise ServerError(
                    str(error), method=error.method, url=error.url, status=error.status
                ) from None
            raise

    def _build(self, method: str, url: str, token: str, kwargs: Mapping[str, Any]) -> httpx.Request:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return self.http.build_request(method, url, headers=headers, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries and one token refresh on a 401; raise a typed error on failure."""
        url = self._endpoint(path)
        refreshed = False
        while True:
            token = self._bearer()
            factory = functools.partial(self._build, method, url, token, kwargs)
            try:
                response = send_with_retries(self.http, factory, self.policy)
            except httpx.TransportError as error:
                raise self._unavailable(method, url, error) from None
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self.tokens.invalidate(token)
                continue
            if response.is_success:
                return response
            raise self._error(method, url, response)

    def _error(self, method: str, url: str, response: httpx.Response) -> ConductorError | AuthError:
        """The typed error for a final non-2xx answer: one line, the server's reason, no secret."""
        status = response.status_code
        where = f"{method} {redacted_url(url)}"
        detail = self._scrub(_message_of(response))
        kwargs: dict[str, Any] = {
            "method": method,
            "url": url,
            "status": status,
            "body": self._scrub(response.text),
        }
        if status in (401, 403):
            return AuthError(
                f"{where}: Conductor refused the credentials (HTTP {status}): {detail};"
                " check the API key",
                **{**kwargs, "url": redacted_url(url)},
            )
        if status == 404:
            return NotFoundError(f"{where}: not found (HTTP 404)", **kwargs)
        if status in RETRY_STATUSES or status >= 500:
            return ServerError(f"{where}: Conductor answered HTTP {status}: {detail}", **kwargs)
        return RequestRejected(f"{where}: rejected (HTTP {status}): {detail}", **kwargs)

    def _data(self, response: httpx.Response) -> Any:
        """The ``data`` member of a JSON answer (or the whole answer when there is none)."""
        try:
            body = response.json()
        except ValueError:
            raise ServerError(
                f"{response.request.method} {redacted_url(response.request.url)}: the answer is"
                " not JSON",
                method=response.request.method,
                url=str(response.request.url),
                status=response.status_code,
                body=self._scrub(response.text),
            ) from None
        return body.get("data", body) if isinstance(body, dict) else body

    def _list(self, response: httpx.Response) -> list[dict[str, Any]]:
        data = self._data(response)
        if data is None:
            return []
        if not isinstance(data, list):
            raise ServerError(
                f"{response.request.method} {redacted_url(response.request.url)}: expected a list"
                f" in the answer, got {type(data).__name__}",
                method=response.request.method,
                url=str(response.request.url),
                status=response.status_code,
            )
        return [item for item in data if isinstance(item, dict)]

    # catalogue --------------------------------------------------------------------------------

    def projects(self) -> list[dict[str, Any]]:
        """Raw project records; ``Catalog.from_api`` keeps the active ones."""
        return self._list(self._call("GET", "api/v1/projects/"))

    def instance_types(self, filter: str = "") -> list[dict[str, Any]]:
        """Raw instance-type records (``filter`` is always sent, as the reference client does)."""
        return self._list(self._call("GET", "api/v1/instance-types", params={"filter": filter}))

    def packages(self) -> list[dict[str, Any]]:
        """Every software package record, unfiltered (no "3dsmax on linux" special case)."""
        return self._list(self._call("GET", "api/v1/ee/packages", params={"all": "true"}))

    def extra_environment(self) -> list[dict[str, Any]]:
        """The account-level extra environment records (``{account_id, env}``)."""
        return self._list(self._call("GET", "api/v1/integrations/env-vars-configs"))

    # uploads ----------------------------------------------------------------------------------

    def get_upload_urls(self, files: Sequence[UploadRequest], project: str | None) -> UploadUrls:
        """Ask which files Conductor lacks; unknown keys in the answer (kmsKeyName) are fine."""
        body = {
            "upload_files": [{"path": f.path, "hash": f.hash, "size": f.size} for f in files],
            "project": project,
        }
        response = self._call("POST", "/api/v2/files/get_upload_urls", json=body)
        if response.status_code == 204 or not response.content.strip():
            return UploadUrls()
        data = self._data(response)
        if not isinstance(data, dict):
            return UploadUrls()
        try:
            single = tuple(
                SinglePartUrl(str(u["filePath"]), int(u["fileSize"]), str(u["preSignedURL"]))
                for u in data.get("singlePartURLs") or []
            )
            multi = tuple(
                MultiPartUrl(
                    upload_id=str(u["uploadID"]),
                    file_path=str(u["filePath"]),
                    md5=str(u.get("md5") or ""),
                    part_size=int(u["partSize"]),
                    file_size=int(u["fileSize"]),
                    parts=tuple(sorted((int(p["partNumber"]), str(p["url"])) for p in u["parts"])),
                )
                for u in data.get("multiPartURLs") or []
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ServerError(
                f"POST {self._endpoint('/api/v2/files/get_upload_urls')}: unreadable upload URL"
                f" answer ({type(error).__name__}: {_one_line(str(error), 80)})",
                method="POST",
                url=self._endpoint("/api/v2/files/get_upload_urls"),
                status=response.status_code,
            ) from None
        kms = data.get("kmsKeyName")
        return UploadUrls(single, multi, str(kms) if kms else None)

    def complete_multipart(
        self, upload_id: str, md5: str, parts: Sequence[tuple[int, str]], project: str | None
    ) -> None:
        """Close a multipart upload; ETags are sent without their quotes, parts in order."""
        body = {
            "uploadID": upload_id,
            "hash": md5,
            "completedParts": [
                {"partNumber": n, "etag": etag.strip('"')} for n, etag in sorted(parts)
            ],
            "project": project,
        }
        self._call("POST", "/api/v2/files/multipart/complete", json=body)

    # jobs -------------------------------------------------------------------------------------

    def find_job(self, submission_id: str) -> dict[str, Any] | None:
        """The job carrying this submission id in its metadata, or None.

        Asks with the metadata filter (see status.py) and checks the metadata itself, so a server
        that ignores the filter still gives a right answer. Should two jobs carry the id (only
        possible if something else posted it), the oldest is the one.
        """
        response = self._call(
            "GET",
            "api/v1/jobs",
            params={"filter": f"metadata.{SUBMISSION_METADATA_KEY}=eq:{submission_id}"},
        )
        jobs = [
            job
            for job in self._list(response)
            if isinstance(job.get("metadata"), dict)
            and job["metadata"].get(SUBMISSION_METADATA_KEY) == submission_id
        ]
        return min(jobs, key=lambda job: str(job.get("jid"))) if jobs else None

    def list_jobs(
        self, first_jid: int | None = None, last_jid: int | None = None
    ) -> list[dict[str, Any]]:
        """Jobs with ``first_jid <= jid <= last_jid`` (either bound optional)."""
        parts = []
        if first_jid is not None:
            parts.append(f"jid_gt_{first_jid - 1:05d}")
        if last_jid is not None:
            parts.append(f"jid_lt_{last_jid + 1:05d}")
        params = {"filter": ",".join(parts)} if parts else {}
        return self._list(self._call("GET", "api/v1/jobs", params=params))

    def get_job(self, jid: str) -> dict[str, Any]:
        data = self._data(self._call("GET", f"api/v1/jobs/{jid}"))
        if not isinstance(data, dict):
            raise ServerError(f"GET {self._endpoint(f'api/v1/jobs/{jid}')}: expected a job object")
        return data

    def get_tasks(self, jid: str) -> list[dict[str, Any]]:
        return self._list(self._call("GET", f"api/v1/jobs/{jid}/tasks"))

    def kill_jobs(self, jids: Sequence[str]) -> None:
        self._call("PUT", "jobs_multi", json={"action": "kill", "jobids": list(jids)})

    def submit_job(self, payload: Mapping[str, Any], submission_id: str) -> SubmittedJob:
        """Post the job for ``submission_id`` so that Conductor ends up holding it once.

        1. Look the id up first: a retried step whose earlier try got through finds its job.
        2. POST with no transport-level retry (the POST is not idempotent on Conductor's side).
        3. After a failure that may have reached the server, look the id up: at once after a
           dropped connection or a 5xx; repeatedly for ``submit_settle`` seconds after a read
           timeout or a 502/504, when the server may still be storing it. Found: return it with
           ``created=False``.
        4. Otherwise wait (backoff, ``Retry-After``), look once more, and post again; at most
           ``SUBMIT_ROUNDS`` posts. A 4xx raises at once; a 401 refreshes the token once.

        Raises ServerError or ConductorUnavailable when every round failed and no job was found
        (running again is then safe), AmbiguousSubmitError when a lookup after a possibly
        delivered POST failed itself.
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
        started = time.monotonic()
        refreshed = False
        maybe_delivered = False  # could any POST so far have reached the server?
        posts = 0
        failure: ConductorError | None = None
        last_response: httpx.Response | None = None
        while posts < SUBMIT_ROUNDS:
            if posts > 0:
                remaining = self.policy.deadline - (time.monotonic() - started)
                time.sleep(backoff_delay(self.policy, posts, last_response, remaining))
                if maybe_delivered:
                    found = self._lookup_after_ambiguity(submission_id)
                    if found is not None:
                        return found
            posts += 1
            last_response = None
            found = None
            token = self._bearer()
            try:
                response = self.http.send(self._build("POST", url, token, {"json": body}))
            except NEVER_SENT_ERRORS as error:
                failure = self._unavailable("POST", url, error)
                continue
            except IN_FLIGHT_ERRORS as error:
                maybe_delivered = True
                failure = self._unavailable("POST", url, error)
                found = self._settle(submission_id, self.submit_settle)
            except httpx.TransportError as error:
                maybe_delivered = True
                failure = self._unavailable("POST", url, error)
                found = self._lookup_after_ambiguity(submission_id)
            else:
                status = response.status_code
                if response.is_success:
                    return self._created(response, submission_id)
                if status == 401 and not refreshed:
                    refreshed = True
                    posts -= 1  # refused at the door: the job was not looked at
                    self.tokens.invalidate(token)
                    continue
                rejected = self._error("POST", url, response)
                if not isinstance(rejected, ServerError):
                    raise rejected
                maybe_delivered = True
                failure = rejected
                last_response = response
                if status in IN_FLIGHT_STATUSES:
                    found = self._settle(submission_id, self.submit_settle)
                else:
                    found = self._lookup_after_ambiguity(submission_id)
            if found is not None:
                return found
        assert failure is not None  # every round that did not return recorded why
        checked = (
            f"no job with submission id {submission_id!r} was found"
            if maybe_delivered
            else "none of them reached Conductor"
        )
        raise type(failure)(
            f"{failure.message} (after {SUBMIT_ROUNDS} tries; {checked}, so running again"
            " will not duplicate the job)",
            method="POST",
            url=url,
            status=failure.status,
            body=failure.body,
        )

    def _found(self, job: Mapping[str, Any], submission_id: str) -> SubmittedJob:
        jid = str(job["jid"])
        return SubmittedJob(
            jid=jid,
            uri=f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=submission_id,
            created=False,
        )

    def _lookup_after_ambiguity(self, submission_id: str) -> SubmittedJob | None:
        """Look the id up after a POST that may have landed; a failed lookup is ambiguous."""
        try:
            found = self.find_job(submission_id)
        except ConductorError as error:
            raise AmbiguousSubmitError(
                f"the job POST may have reached Conductor and looking it up failed"
                f" ({error.message}); check the dashboard for submission id {submission_id!r}"
                " before submitting again",
                method="GET",
                url=self._endpoint("api/v1/jobs"),
                status=error.status,
            ) from None
        return self._found(found, submission_id) if found is not None else None

    def _settle(self, submission_id: str, window: float) -> SubmittedJob | None:
        """Keep looking for the job for ``window`` seconds: the server may still be storing it."""
        give_up = time.monotonic() + window
        lookups = 0
        while True:
            found = self._lookup_after_ambiguity(submission_id)
            left = give_up - time.monotonic()
            if found is not None or left <= 0:
                return found
            lookups += 1
            pause = min(self.policy.max_delay, self.policy.base_delay * 2 ** (lookups - 1))
            time.sleep(min(left, max(pause, 0.05)))

    def _created(self, response: httpx.Response, submission_id: str) -> SubmittedJob:
        """The SubmittedJob for a 2xx answer; an answer without the id is settled by lookup."""
        jid = ""
        uri = ""
        try:
            answer = response.json() if response.content.strip() else {}
        except ValueError:
            answer = {}
        if isinstance(answer, dict):
            jid = str(answer.get("jobid") or answer.get("jid") or "")
            uri = str(answer.get("uri") or "")
        if not jid:  # a 204, or a body without the id: the lookup knows it
            found = self._settle(submission_id, self.submit_settle)
            if found is None:
                raise AmbiguousSubmitError(
                    "Conductor accepted the job but named no id, and submission id"
                    f" {submission_id!r} is not listed yet; check the dashboard",
                    method="POST",
                    url=self._endpoint("jobs/"),
                    status=response.status_code,
                )
            jid, uri = found.jid, found.uri
        return SubmittedJob(
            jid=jid,
            uri=uri or f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=submission_id,
            created=True,
        )
