"""The Conductor requests the evidence shows: the one allowlist the strict sandbox enforces.

A request is Conductor's only if a public Conductor client sends it. Each endpoint below cites
where (``ciocore`` 9.2.0 ``api_client.py`` and ``conductor_submit.py``, the desktop client, the
Tractor example by Conductor staff). The sandbox answers 404 to a method and path not listed
here and 400 to a query parameter, filter term or body key the evidence does not show, so a
client that passes against the sandbox sends nothing Conductor has never been seen to accept.
The same module tells a test whether a logged request conforms (``conforms``).

Not Conductor's and therefore not listed: the sandbox's own admin API (``/_sandbox/``) and its
signed storage routes (``/_storage/``, ``/_storage/out/``), which stand for the cloud bucket a
signed URL points at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

JID = r"\d{5}"
"""Job ids are zero-padded to 5 digits (ciocore api_client.py:637-638, 734)."""
TID = r"\d{3}"
"""Task ids are zero-padded to 3 digits (ciocore api_client.py:700-701, 774)."""
DATE = r"\d{4}-\d{2}-\d{2}"


@dataclass(frozen=True)
class Term:
    """One kind of ``filter`` term: its name (what the request log keeps) and its full form."""

    name: str
    pattern: str

    def match(self, text: str) -> re.Match[str] | None:
        return re.fullmatch(self.pattern, text)


@dataclass(frozen=True)
class Endpoint:
    """A method and path a Conductor client sends, the query it may carry, and the source."""

    method: str
    path: str
    source: str
    params: frozenset[str] = frozenset()
    terms: tuple[Term, ...] = ()
    required: frozenset[str] = frozenset()
    path_regex: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(self.path))
        object.__setattr__(self, "path_regex", re.compile(pattern))

    def term(self, text: str) -> Term | None:
        return next((term for term in self.terms if term.match(text)), None)


JOB_TERMS = (
    Term("jid_eq_", rf"jid_eq_{JID}"),  # conductor_client@9d9fb40b test_utils.py:10-20
    Term("jid_gt_", rf"jid_gt_{JID}"),  # ciocore api_client.py:647
    Term("jid_lt_", rf"jid_lt_{JID}"),  # ciocore api_client.py:647
    Term("account_id_eq_", r"account_id_eq_[\w-]+"),  # desktop_client jobs.js:25-77
    Term("created_gt_", rf"created_gt_{DATE}"),  # desktop_client jobs.js:87-123
    Term("created_lt_", rf"created_lt_{DATE}"),  # desktop_client jobs.js:87-123
)
TASK_TERMS = (
    Term("jobLabel_eq_", rf"jobLabel_eq_{JID}"),  # hybrid_examples send_to_conductor.py:60-70
    Term("taskLabel_eq_", rf"taskLabel_eq_{TID}"),  # hybrid_examples conductor_poll.py:20-28
)
INSTANCE_TYPE_TERMS = (
    # ciocore api_client.py:492-507: cpu=gte:8:int,operating_system=ne:windows,...
    Term("<field>=<op>:<value>", r"[a-z_][a-z0-9_.]*=(eq|ne|gte):[\w.-]*(:int)?"),
)
PROJECT_TERMS = (Term("account_id_eq_", r"account_id_eq_[\w-]+"),)  # fetchProjects.js:22-28

JOB_LIST_FIELDS = frozenset(
    {"title", "submittedBy", "jid", "project", "created", "id", "location", "output_path", "user"}
)
"""``fields=`` of the desktop client's job listing (desktop_client src/_actions/jobs.js:134)."""

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/api/oauth_jwt",
        "ciocore api_client.py:361-399",
        params=frozenset({"grant_type", "scope", "client_id", "client_secret"}),
        required=frozenset({"grant_type", "client_id", "client_secret"}),
    ),
    Endpoint("GET", "/api/v1/projects/", "ciocore api_client.py request_projects"),
    Endpoint(
        "GET",
        "/api/v1/projects",
        "desktop_client src/_actions/submitter/fetchProjects.js:22-28",
        params=frozenset({"filter"}),
        terms=PROJECT_TERMS,
    ),
    Endpoint(
        "GET",
        "/api/v1/instance-types",
        "ciocore api_client.py:492-507",
        params=frozenset({"filter"}),
        terms=INSTANCE_TYPE_TERMS,
    ),
    Endpoint(
        "GET",
        "/api/v1/ee/packages",
        "ciocore api_client.py request_software_packages ('?all=true,')",
        params=frozenset({"all"}),
    ),
    Endpoint(
        "GET",
        "/api/v1/integrations/env-vars-configs",
        "ciocore api_client.py request_extra_environment",
    ),
    Endpoint("GET", "/api/v1/accounts/{account}", "ciocore api_client.py:484-488"),
    Endpoint("POST", "/api/v2/files/get_upload_urls", "ciocore uploader/_uploader.py"),
    Endpoint("POST", "/api/v2/files/multipart/complete", "ciocore uploader/_uploader.py"),
    Endpoint("POST", "/jobs/", "ciocore conductor_submit.py:155-167"),
    Endpoint(
        "GET",
        "/api/v1/jobs",
        "ciocore api_client.py:614-655; desktop_client src/_actions/jobs.js:25-134",
        params=frozenset({"filter", "fields"}),
        terms=JOB_TERMS,
    ),
    Endpoint(
        "GET",
        "/api/v1/tasks",
        "https://api.conductortech.com only: hybrid_examples tractor/bin/conductor_poll.py:20-28,"
        " send_to_conductor.py:60-70",
        params=frozenset({"filter"}),
        terms=TASK_TERMS,
        required=frozenset({"filter"}),
    ),
    Endpoint(
        "GET",
        "/get_log_file",
        "ciocore api_client.py:658-715",
        params=frozenset({"job", "task", "num_lines[]"}),
        required=frozenset({"job", "task"}),
    ),
    Endpoint(
        "POST",
        "/jobs/{jid}/downloads",
        "ciocore downloader/job_downloader.py:7, 62-90",
        params=frozenset({"limit", "start_cursor"}),
        required=frozenset({"limit"}),
    ),
    Endpoint(
        "POST",
        "/downloads/status",
        "ciocore downloader/reporter.py:16-18, 61-71; desktop_client src/_actions/files.js:74-90",
    ),
    Endpoint("PUT", "/jobs_multi", "ciocore api_client.py:718-753"),
    Endpoint("PUT", "/tasks_multi", "ciocore api_client.py:756-794"),
)

JOB_KEYS = frozenset(
    {
        "instance_type",
        "project",
        "tasks_data",
        "output_path",
        "autoretry_policy",
        "docker_image",
        "environment",
        "job_title",
        "local_upload",
        "location",
        "preemptible",
        "metadata",
        "priority",
        "scout_frames",
        "software_package_ids",
        "max_instances",
        "chunk_size",
        "owner",
        "notify",
        "upload_files",
        "upload_size",
    }
)
"""Keys ``POST jobs/`` may carry (ciocore conductor_submit.py:40-65); ``bodies.py`` types them."""


class Refusal(Exception):
    """What the strict sandbox answers to a request the evidence does not show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Shape:
    """A request reduced to what the log keeps: no query values (a secret may be one)."""

    endpoint: Endpoint
    params: tuple[str, ...]
    terms: tuple[str, ...]


def find(method: str, path: str) -> Endpoint | None:
    """The endpoint for ``method`` and ``path``, or None if no Conductor client sends it."""
    return next((e for e in ENDPOINTS if e.method == method and e.path_regex.fullmatch(path)), None)


def check(method: str, path: str, query: list[tuple[str, str]]) -> Shape:
    """The request's shape; Refusal (404 for the route, 400 naming a parameter or term)."""
    endpoint = find(method, path)
    if endpoint is None:
        raise Refusal(404, f"{method} {path} is not a Conductor endpoint")
    names = [name for name, _ in query]
    for name in names:
        if name not in endpoint.params:
            raise Refusal(400, f"query parameter {name!r} is not accepted by {endpoint.path}")
        if names.count(name) > 1:
            raise Refusal(400, f"query parameter {name!r} is given more than once")
    for name in sorted(endpoint.required - set(names)):
        raise Refusal(400, f"query parameter {name!r} is required by {endpoint.path}")
    values = dict(query)
    terms: list[str] = []
    if "filter" in values and endpoint.terms:
        for text in filter(None, values["filter"].split(",")):
            term = endpoint.term(text)
            if term is None:
                raise Refusal(400, f"filter: {text[:80]!r} is not a filter term {path} accepts")
            terms.append(term.name)
    if "fields" in values:
        for name in values["fields"].split(","):
            if name not in JOB_LIST_FIELDS:
                raise Refusal(400, f"fields: {name[:80]!r} is not a job field")
    if endpoint.path == "/api/v1/ee/packages" and values.get("all", "true,") != "true,":
        raise Refusal(400, "all: the package listing takes all=true, (with its comma)")
    return Shape(endpoint, tuple(sorted(set(names))), tuple(terms))


def conforms(method: str, path: str, params: list[str], terms: list[str]) -> bool:
    """Whether a logged request (method, path, parameter names, filter term names) is evidenced."""
    endpoint = find(method, path)
    if endpoint is None:
        return False
    known_terms = {term.name for term in endpoint.terms}
    return set(params) <= endpoint.params and set(terms) <= known_terms
