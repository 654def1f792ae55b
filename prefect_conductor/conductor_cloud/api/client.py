"""ConductorClient: every Conductor endpoint the submitter uses, over one httpx client.

Each request has the form Conductor's own clients send (docs/protocol.md lists them with their
sources). What it fixes in the reference client: explicit connect/read/write/pool timeouts on
every call, one pooled connection, retries only of what is transient (``retry.py``), a typed
error per failure (``client_errors.py``) that carries method, URL and status but never a secret,
a token refresh on a 401 (``auth.BearerAuth``), and a job POST that does not create two jobs:
what was posted per submission id is recorded before and after the POST (``post_record.py``),
and after a POST that may have reached Conductor the client only looks for the job by its
tagged title (``job_lookup.py``), never posts again (see :meth:`ConductorClient.submit_job`).
Records it returns are in ``wire_types.py``; the job and task shapes we rely on are stated in
``status.py``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from prefect_conductor import __version__
from prefect_conductor.conductor_cloud.api.auth import (
    ApiKey,
    ApiKeyError,
    AuthError,
    BearerAuth,
    TokenManager,
    api_key_from_env,
)
from prefect_conductor.conductor_cloud.api.client_errors import (
    ConductorError,
    ConductorUnavailable,
    NotFoundError,
    RequestRejected,
    ServerError,
    SubmissionUnresolved,
)
from prefect_conductor.conductor_cloud.api.job_lookup import (
    Lookup,
    Outcome,
    find_posted,
    jid_number,
    jid_text,
)
from prefect_conductor.conductor_cloud.api.post_record import (
    MemoryPostRecords,
    PostRecord,
    PostRecords,
)
from prefect_conductor.conductor_cloud.api.retry import (
    NEVER_SENT_ERRORS,
    RETRY_STATUSES,
    RetryPolicy,
    backoff_delay,
    jitter,
    redacted_url,
    send_with_retries,
)
from prefect_conductor.conductor_cloud.api.status import SUBMISSION_METADATA_KEY
from prefect_conductor.conductor_cloud.api.wire_types import (
    MultiPartUrl,
    SinglePartUrl,
    SubmittedJob,
    UploadRequest,
    UploadUrls,
)
from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.settings import DEFAULT_CONDUCTOR_URL, get_settings
from prefect_conductor.conductor_cloud.transfers.downloads import DownloadTask

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "AuthError",
    "ConductorClient",
    "ConductorError",
    "ConductorUnavailable",
    "MultiPartUrl",
    "NotFoundError",
    "RequestRejected",
    "ServerError",
    "SinglePartUrl",
    "SubmissionUnresolved",
    "SubmittedJob",
    "UploadRequest",
    "UploadUrls",
]

DEFAULT_URL = DEFAULT_CONDUCTOR_URL
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=10.0)
SUBMIT_ROUNDS = 3
"""How many times one ``submit_job`` call may POST, each after an answer that says the job was
not taken (a refused connection, 408/425/429/503)."""

NOT_TAKEN_STATUSES = frozenset({408, 425, 429, 503})
"""Answers that say the request was not processed: posting again cannot make a second job.
Every other 5xx (500, 502, 504...) may come after the job was stored, or while it is stored."""

ACCEPT_JSON = {"Accept": "application/json"}
LISTING_FIELDS = "title,submittedBy,jid,project,created,id,location,output_path,user"
"""The desktop client's ``fields=`` for its job listing: every field a lookup may match on."""
DOWNLOAD_PAGE_SIZE = 50
"""Tasks per downloads page (ciocore's JobDownloader pages the same way)."""
DOWNLOAD_STATUSES = frozenset({"downloaded", "pending", "downloading"})


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
    """``url`` without a trailing slash, or one line saying it is not an http(s) address.

    Settings check CONDUCTOR_URL already; this catches the run's own ``conductor_url`` parameter.
    httpx's own reason is not shown: it may quote an address that carries credentials.
    """
    problem = UserError(
        "conductor_url: not a valid address (expected http(s)://host[:port]; check the run's"
        " conductor_url or CONDUCTOR_URL)"
    )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise problem from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise problem
    return url.rstrip("/")


class ConductorClient:
    """Talks to Conductor (or the sandbox) at ``url`` with an API key.

    Task listings go to ``api_url`` (default: the ``api_url`` setting, else Conductor's API host
    for Conductor's own dashboard and ``url`` itself for any other address, such as a sandbox).

    ``lookup_seconds`` (default: the ``submit_lookup_seconds`` setting) is how long, after a job
    POST that may have reached Conductor, the client keeps looking for the job before it gives
    up with :class:`SubmissionUnresolved`; it never posts again in that case. ``sleep`` is
    injectable so tests wait for nothing.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: ApiKey | None = None,
        *,
        api_url: str | None = None,
        timeout: httpx.Timeout | None = None,
        policy: RetryPolicy | None = None,
        token_cache_dir: Path | None = None,
        user_agent: str | None = None,
        lookup_seconds: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = get_settings()
        self.url = _checked_url(url or settings.conductor_url)
        self.shown_url = redacted_url(self.url)
        """The address as messages, links and files show it: without user name or password."""
        self.api_url = _checked_url(api_url or settings.api_address(self.url))
        key = api_key if api_key is not None else api_key_from_env()
        if key is None:
            raise ApiKeyError(
                "no Conductor API key: set CONDUCTOR_API_KEY or CONDUCTOR_API_KEY_PATH, or name"
                " a Secret block in credentials_block"
            )
        self.policy = policy or RetryPolicy()
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.lookup_seconds = (
            lookup_seconds if lookup_seconds is not None else settings.submit_lookup_seconds
        )
        self.lookback_days = settings.submission_lookback_days
        self.sleep = sleep
        self.http = httpx.Client(
            timeout=self.timeout,
            headers={"User-Agent": user_agent or f"prefect-conductor/{__version__}"},
            follow_redirects=False,
            transport=transport,
        )
        self.tokens = TokenManager(
            self.url, key, self.http, cache_dir=token_cache_dir, policy=self.policy
        )
        self.auth = BearerAuth(self.tokens)
        self.records: PostRecords = MemoryPostRecords()

    def __repr__(self) -> str:
        return f"ConductorClient(url={self.shown_url!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ConductorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dashboard_url(self, jid: str) -> str:
        return f"{self.shown_url}/job/{jid}"

    # transport --------------------------------------------------------------------------------

    def _endpoint(self, path: str) -> str:
        """``path`` on the Conductor address; a full URL (the API host's) as it is."""
        if path.startswith(("https://", "http://")):
            return path
        return f"{self.url}/{path.lstrip('/')}"

    def _scrub(self, text: str) -> str:
        return self.tokens.redact(text)

    def _unavailable(self, method: str, url: str, error: Exception) -> ConductorUnavailable:
        return ConductorUnavailable(
            self._scrub(f"cannot reach Conductor at {self.shown_url}: {_reason(error)}"),
            method=method,
            url=url,
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries (a 401 refreshes the token once); raise a typed error on failure."""
        url = self._endpoint(path)

        def build() -> httpx.Request:
            return self.http.build_request(method, url, headers=ACCEPT_JSON, **kwargs)

        try:
            response = send_with_retries(
                self.http, build, self.policy, auth=self.auth, sleep=self.sleep
            )
        except httpx.TransportError as error:
            raise self._unavailable(method, url, error) from None
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
            "url": redacted_url(url),
            "status": status,
            "body": self._scrub(response.text),
        }
        if status in (401, 403):
            return AuthError(
                f"{where}: Conductor refused the credentials (HTTP {status}): {detail};"
                " check the API key",
                **kwargs,
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
        return self._list(self._call("GET", "api/v1/ee/packages?all=true,"))

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
                f"POST {self.shown_url}/api/v2/files/get_upload_urls: unreadable upload URL"
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

    # jobs and tasks ---------------------------------------------------------------------------

    def _job_listing(self, filter_text: str) -> list[dict[str, Any]]:
        """``GET api/v1/jobs?filter=<filter_text>`` (ciocore ``get_jobs``, the desktop client)."""
        return self._list(self._call("GET", "api/v1/jobs", params={"filter": filter_text}))

    def list_jobs(
        self, first_jid: int | None = None, last_jid: int | None = None
    ) -> list[dict[str, Any]]:
        """Jobs with ``first_jid <= jid <= last_jid`` (ciocore's ``jid_gt_``/``jid_lt_`` bounds)."""
        parts = []
        if first_jid is not None:
            parts.append(f"jid_gt_{jid_text(first_jid - 1)}")
        if last_jid is not None:
            parts.append(f"jid_lt_{jid_text(last_jid + 1)}")
        jobs = self._job_listing(",".join(parts))
        low = first_jid if first_jid is not None else -1
        high = last_jid if last_jid is not None else float("inf")
        return [job for job in jobs if (n := jid_number(job)) is not None and low <= n <= high]

    def get_job(self, jid: str) -> dict[str, Any]:
        """One job's record, read through the jid-range listing (there is no per-job GET)."""
        number = _jid(jid)
        for job in self.list_jobs(number, number):
            return job
        raise NotFoundError(
            f"GET {self.shown_url}/api/v1/jobs: no job {jid_text(number)}",
            method="GET",
            url=self._endpoint("api/v1/jobs"),
        )

    def get_tasks(self, jid: str) -> list[dict[str, Any]]:
        """The job's task records: ``GET <api host>/api/v1/tasks?filter=jobLabel_eq_<jid>``.

        Conductor's clients read task listings on the API host, not the dashboard's
        (``api_url``); a 404 names the setting to check. Records naming another job (a server
        that ignored the filter) are dropped.
        """
        label = jid_text(_jid(jid))
        url = f"{self.api_url}/api/v1/tasks"
        try:
            response = self._call("GET", url, params={"filter": f"jobLabel_eq_{label}"})
        except NotFoundError as error:
            raise NotFoundError(
                f"GET {url}: not found (HTTP 404); the task listing lives on Conductor's API"
                " host: check PREFECT_CONDUCTOR_API_URL",
                method="GET",
                url=url,
                status=404,
                body=error.body,
            ) from None
        tasks = self._list(response)
        return [t for t in tasks if str(t.get("jobLabel", label)) == label]

    def kill_jobs(self, jids: Sequence[str]) -> None:
        """``PUT jobs_multi {"action": "kill", "jobids": [...]}`` (ciocore ``kill_jobs``)."""
        body = {"action": "kill", "jobids": [jid_text(_jid(j)) for j in jids]}
        self._call("PUT", "jobs_multi", json=body)

    def find_job(
        self, title: str, project: str = "", first_attempt: datetime | None = None
    ) -> Lookup:
        """Whether a job titled ``title`` (carrying its submission tag) is listed in
        ``project`` (``job_lookup.py``), looking back from ``first_attempt`` (default now)."""
        return find_posted(
            self._lookup_listing,
            title,
            project=project,
            account=self.tokens.account_id(),
            created_after=self._created_after(first_attempt),
        )

    def _lookup_listing(self, filter_text: str) -> list[dict[str, Any]]:
        """The job listing as the desktop client asks for it, with its ``fields=``."""
        params = {"filter": filter_text, "fields": LISTING_FIELDS}
        return self._list(self._call("GET", "api/v1/jobs", params=params))

    def _created_after(self, first_attempt: datetime | None) -> date:
        utc = timezone.utc  # noqa: UP017 - datetime.UTC is 3.11+
        when = first_attempt or datetime.now(utc)
        if when.tzinfo is not None:
            when = when.astimezone(utc)
        return when.date() - timedelta(days=self.lookback_days)

    def submit_job(
        self,
        payload: Mapping[str, Any],
        submission_id: str,
        *,
        first_attempt: datetime | None = None,
        records: PostRecords | None = None,
    ) -> SubmittedJob:
        """Post the job for ``submission_id`` so that Conductor ends up holding it once.

        ``records`` (default: this client's memory) keep what was posted per submission id;
        callers in several processes pass records they share, and hold a lock around this call.

        1. A record with a job id: that job, and Conductor is asked nothing.
        2. A record without one (an earlier POST whose outcome is unknown): look for the job by
           its tagged title (step 5), never post.
        3. Otherwise record the title, then ``POST jobs/``; no transport-level retry.
        4. A refused connection or an answer that says "not taken" (408/425/429/503): wait
           (backoff, ``Retry-After``) and post again, at most ``SUBMIT_ROUNDS`` posts. A 4xx
           raises at once (a 401 refreshes the token once, ``BearerAuth``). Either way the
           record is dropped: nothing was posted.
        5. Anything that may have reached Conductor (a read timeout, a connection dropped after
           sending, another 5xx, a 2xx without a jid): never post again. Look the job up by its
           title with backoff for ``lookup_seconds``; found, record and return it
           (``created=False``); otherwise raise :class:`SubmissionUnresolved`, naming the title
           to look for (not transient: a person decides).
        """
        records = records if records is not None else self.records
        title = str(payload.get("job_title") or "")
        project = str(payload.get("project") or "")
        known = records.read(submission_id)
        if known is not None and known.jid:
            return self._found(known.jid, submission_id)
        if known is not None:
            return self._resolve(
                known,
                project,
                first_attempt,
                "an earlier POST of this submission ended without an answer",
                records,
            )
        url = self._endpoint("jobs/")
        body = dict(payload)
        body["metadata"] = {
            **dict(payload.get("metadata") or {}),
            SUBMISSION_METADATA_KEY: submission_id,
        }
        intent = PostRecord(submission_id=submission_id, title=title)
        records.write(intent)
        started = time.monotonic()
        failure: ConductorError | None = None
        last_response: httpx.Response | None = None
        for post in range(1, SUBMIT_ROUNDS + 1):
            if post > 1:
                remaining = self.policy.deadline - (time.monotonic() - started)
                if remaining <= 0:
                    break
                self.sleep(backoff_delay(self.policy, post - 1, last_response, remaining))
            last_response = None
            request = self.http.build_request("POST", url, json=body, headers=ACCEPT_JSON)
            try:
                response = self.http.send(request, auth=self.auth)
            except NEVER_SENT_ERRORS as error:
                failure = self._unavailable("POST", url, error)
                continue
            except httpx.TransportError as error:
                return self._resolve(
                    intent, project, first_attempt, f"the POST ended with {_reason(error)}", records
                )
            except (ConductorUnavailable, ServerError) as error:  # signing in failed: not sent
                failure = error
                continue
            if response.is_success:
                return self._created(response, intent, project, first_attempt, records)
            refused = self._error("POST", url, response)
            if not isinstance(refused, ServerError):
                records.forget(submission_id)
                raise refused
            if response.status_code not in NOT_TAKEN_STATUSES:
                return self._resolve(
                    intent,
                    project,
                    first_attempt,
                    f"Conductor answered the POST with HTTP {response.status_code}",
                    records,
                )
            failure = refused
            last_response = response
        records.forget(submission_id)
        assert failure is not None  # every round that did not return recorded why
        raise type(failure)(
            f"{failure.message} (after {SUBMIT_ROUNDS} tries, none taken by Conductor, so"
            " running again will not duplicate the job)",
            method="POST",
            url=url,
            status=failure.status,
            body=failure.body,
        )

    def _found(self, jid: str, submission_id: str) -> SubmittedJob:
        return SubmittedJob(
            jid=jid,
            uri=f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=submission_id,
            created=False,
        )

    def _resolve(
        self,
        intent: PostRecord,
        project: str,
        first_attempt: datetime | None,
        what: str,
        records: PostRecords,
    ) -> SubmittedJob:
        """After a POST that may have landed: look for its title, with backoff, for
        ``lookup_seconds``.

        Never posts. A lookup that fails transiently or cannot tell is tried again until the time
        is up (a refused one ends the wait at once); then :class:`SubmissionUnresolved` names the
        title to look for and what to do.
        """
        give_up = time.monotonic() + self.lookup_seconds
        lookups = 0
        while True:
            lookups += 1
            try:
                lookup = self.find_job(intent.title, project, first_attempt)
            except ServiceError as error:
                last = f"the last lookup failed ({error.message})"
                if not error.transient:  # refused (4xx): asking again cannot help
                    break
            else:
                if lookup.outcome is Outcome.FOUND:
                    assert lookup.job is not None
                    jid = str(lookup.job["jid"])
                    records.write(intent.posted(jid))
                    return self._found(jid, intent.submission_id)
                last = (
                    "no listed job has that title"
                    if lookup.outcome is Outcome.ABSENT
                    else f"the lookup cannot tell ({lookup.reason})"
                )
            left = give_up - time.monotonic()
            if left <= 0:
                break
            self.sleep(min(left, max(jitter(self.policy, lookups), self.policy.base_delay)))
        raise SubmissionUnresolved(
            f"job {intent.title!r}: {what}, so it may exist, and after {lookups} lookup(s) in"
            f" {self.lookup_seconds:g} s {last}; look for that title on the Conductor dashboard,"
            " and rerun with a new submission key only if no job has it",
            method="POST",
            url=self._endpoint("jobs/"),
        )

    def _created(
        self,
        response: httpx.Response,
        intent: PostRecord,
        project: str,
        first_attempt: datetime | None,
        records: PostRecords,
    ) -> SubmittedJob:
        """The SubmittedJob for a 2xx answer, recorded; an answer without the jid is settled by
        lookup."""
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
            found = self._resolve(
                intent,
                project,
                first_attempt,
                "Conductor accepted the POST but named no job id",
                records,
            )
            return dataclasses.replace(found, created=True)
        records.write(intent.posted(jid))
        return SubmittedJob(
            jid=jid,
            uri=uri or f"/jobs/{jid}",
            dashboard_url=self.dashboard_url(jid),
            submission_id=intent.submission_id,
            created=True,
        )

    # downloads ----------------------------------------------------------------------------------

    def download_pages(
        self, jid: str, tids: Sequence[str] | None = None, page_size: int = DOWNLOAD_PAGE_SIZE
    ) -> Iterator[list[DownloadTask]]:
        """The job's downloads, a page at a time (ciocore ``JobDownloader``).

        ``POST jobs/<jid>/downloads?limit=<n>&start_cursor=<cursor>`` with ``{"tids": [...]}``
        (``null``: every task; ids as ciocore writes them, ``"003"``); 201 answers
        ``{"downloads": [...], "next_cursor": ...}`` and a
        falsy cursor ends the walk. Any other status is an error, as in ciocore.
        """
        path = f"jobs/{jid_text(_jid(jid))}/downloads"
        body = {"tids": [f"{int(t):03d}" for t in tids] if tids else None}
        cursor = ""
        seen: set[str] = set()
        while True:
            # ciocore's first page has no cursor at all (requests drops its None).
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["start_cursor"] = cursor
            response = self._call("POST", path, params=params, json=body)
            url = f"{self.shown_url}/{path}"
            if response.status_code != 201:
                raise ServerError(
                    f"POST {url}: expected HTTP 201, got {response.status_code}",
                    method="POST",
                    url=url,
                    status=response.status_code,
                )
            answer = self._data(response)
            records = answer.get("downloads") if isinstance(answer, dict) else None
            if not isinstance(records, list):
                raise ServerError(
                    f"POST {url}: the answer has no downloads list",
                    method="POST",
                    url=url,
                    status=response.status_code,
                )
            try:
                yield [DownloadTask.from_record(r) for r in records if isinstance(r, dict)]
            except (KeyError, TypeError, ValueError) as error:
                raise ServerError(
                    f"POST {url}: unreadable download record ({type(error).__name__})",
                    method="POST",
                    url=url,
                    status=response.status_code,
                ) from None
            cursor = str(answer.get("next_cursor") or "")
            if not cursor:
                return
            if cursor in seen:
                raise ServerError(
                    f"POST {url}: the listing repeats its cursor; stopped",
                    method="POST",
                    url=url,
                    status=response.status_code,
                )
            seen.add(cursor)

    def report_download(
        self, download_id: str, status: str, bytes_downloaded: int, bytes_to_download: int
    ) -> None:
        """``POST downloads/status`` with ciocore's four keys; ``status`` is ``downloaded``,
        ``pending`` or ``downloading`` (ciocore ``reporter.py``, the desktop client)."""
        if status not in DOWNLOAD_STATUSES:
            raise ValueError(f"not a download status: {status!r}")
        body = {
            "download_id": download_id,
            "status": status,
            "bytes_downloaded": bytes_downloaded,
            "bytes_to_download": bytes_to_download,
        }
        self._call("POST", "downloads/status", json=body)

    def task_log(self, jid: str, tid: str) -> list[str]:
        """A task's log lines: ``GET get_log_file?job=<jid>&task=<tid>&num_lines[]=0`` (ciocore
        ``get_log``); the ``log`` lines of every ``logs[]`` entry, in order."""
        params = {"job": jid_text(_jid(jid)), "task": f"{int(tid):03d}", "num_lines[]": 0}
        answer = self._data(self._call("GET", "get_log_file", params=params))
        lines: list[str] = []
        for entry in (answer.get("logs") if isinstance(answer, dict) else None) or []:
            if isinstance(entry, dict) and isinstance(entry.get("log"), list):
                lines.extend(self._scrub(str(line)) for line in entry["log"])
        return lines


def _jid(jid: str | int) -> int:
    """A jid as a number; a caller passing something else is a bug, said plainly."""
    text = str(jid).strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a Conductor job id: {jid!r}")
    return int(text)
