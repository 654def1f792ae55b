"""Start a flow run of a deployment over Prefect's REST API, with httpx and nothing of Prefect.

The host's Submit button calls :func:`start_flow_run`. It must return in well under a second and
may run in a Python that Prefect does not support, so this module speaks plain HTTP
(research/prefect-notes.md section 5):

1. ``GET  /deployments/name/{flow}/{deployment}`` finds the deployment's id, once per host
   session: the id is kept in memory, so every later Submit is the one call below. A kept id that
   the server no longer knows (the deployment was deleted and deployed again) is looked up afresh
   once;
2. ``POST /deployments/{id}/create_flow_run`` with the parameters, tags and an ``idempotency_key``.
   The same key again returns the same run (HTTP 200 instead of 201), so a double-click on Submit,
   or a retry after an answer that was lost on the way back, never makes a second run.

Both calls go through the project's one retry policy (``conductor_cloud.retry``): connect and
read errors, timeouts, 408/425/429/5xx are retried with jittered backoff under a total deadline.
A SQLite-backed Prefect server answers 503 when its write lock is busy, which is common
with a few clients at once; the idempotency key makes retrying the POST safe. Any other 4xx is
reported at once as one line naming what to fix.

The timeout policy (the artist waits while Submit runs): one answer may take ``READ_SECONDS``;
one that does not come is asked again with the same key, and the whole Submit gives up after
``PREFECT_CONDUCTOR_SUBMIT_SECONDS`` (default 20 s, so an overloaded server gets a second chance
after a lost answer). Giving up says so in one line and that Submit may be pressed again: at most
one run is ever made for the same submission.

Settings come from the environment the way Prefect's own client reads them: ``PREFECT_API_URL``,
``PREFECT_API_KEY`` (a bearer token, Prefect Cloud) or ``PREFECT_API_AUTH_STRING`` (``user:pass``
for a self-hosted server with basic auth), and ``PREFECT_UI_URL`` for the link shown to the
artist; PREFECT_CONDUCTOR_DEPLOYMENT names another deployment than ``render-submit/conductor``
(a second farm, a test deployment). Credentials never appear in a message, a repr or a URL.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from prefect_conductor import __version__
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy, send_with_retries
from prefect_conductor.conductor_cloud.errors import ServiceError

DEFAULT_DEPLOYMENT = "render-submit/conductor"
READ_SECONDS = 8.0
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=READ_SECONDS, write=READ_SECONDS, pool=3.0)
SUBMIT_SECONDS = 20.0
DEFAULT_POLICY = RetryPolicy(attempts=6, base_delay=0.2, max_delay=2.0, deadline=SUBMIT_SECONDS)
"""Six tries within twenty seconds: enough to ride out a busy SQLite server or one answer lost to
an overloaded one, short enough that an artist is told soon when Prefect is really down."""

CLOUD_API = re.compile(r"^/api/accounts/(?P<account>[^/]+)/workspaces/(?P<workspace>[^/]+)/?$")


class PrefectError(ServiceError):
    """Prefect could not start the flow run; ``str()`` is one line saying what to fix."""

    exit_code = 3


class PrefectUnavailable(PrefectError):
    """Prefect could not be reached (refused, timed out, or busy) after the retries."""


class DeploymentNotFound(PrefectError):
    """The server has no deployment of that name."""


class FlowRunRejected(PrefectError):
    """The server refused the flow run as asked (the parameters do not fit the schema)."""


def _without_credentials(url: str) -> str:
    """The URL with any ``user:password@`` removed, for messages and links."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def ui_url_for(api_url: str) -> str:
    """Prefect's UI address for an API address (Cloud's app host, else the API without /api)."""
    parts = urlsplit(api_url.rstrip("/"))
    cloud = CLOUD_API.match(parts.path)
    if parts.hostname == "api.prefect.cloud" and cloud is not None:
        return (
            f"https://app.prefect.cloud/account/{cloud['account']}/workspace/{cloud['workspace']}"
        )
    base = _without_credentials(api_url.rstrip("/"))
    return base[: -len("/api")] if base.endswith("/api") else base


def _seconds(source: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from the environment; anything else is a one-line error."""
    text = source.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise PrefectError(f"{name}={text!r} must be a number of seconds between 0 and 3600")
    return value


@dataclass(frozen=True)
class PrefectSettings:
    """Where Prefect is and how to sign in; read from the environment by :meth:`from_env`."""

    api_url: str
    api_key: str | None = field(default=None, repr=False)
    auth_string: str | None = field(default=None, repr=False)
    ui_url: str | None = None
    deployment: str = DEFAULT_DEPLOYMENT
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    submit_seconds: float = SUBMIT_SECONDS
    """How long one Submit may take in all, retries included."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PrefectSettings:
        """Prefect's own variables; a missing PREFECT_API_URL is a one-line error."""
        source = os.environ if env is None else env
        url = source.get("PREFECT_API_URL", "").strip()
        if not url:
            raise PrefectError(
                "PREFECT_API_URL is not set: point it at the studio's Prefect server"
                " (for example http://prefect:4200/api) before starting the host"
            )
        return cls(
            api_url=url.rstrip("/"),
            api_key=source.get("PREFECT_API_KEY", "").strip() or None,
            auth_string=source.get("PREFECT_API_AUTH_STRING", "").strip() or None,
            ui_url=source.get("PREFECT_UI_URL", "").strip().rstrip("/") or None,
            deployment=source.get("PREFECT_CONDUCTOR_DEPLOYMENT", "").strip() or DEFAULT_DEPLOYMENT,
            submit_seconds=_seconds(source, "PREFECT_CONDUCTOR_SUBMIT_SECONDS", SUBMIT_SECONDS),
        )

    @property
    def display_url(self) -> str:
        """The API address as it may be shown to a person."""
        return _without_credentials(self.api_url)

    def headers(self) -> dict[str, str]:
        """Accept, User-Agent and the credentials (bearer key first, else basic auth)."""
        headers = {
            "Accept": "application/json",
            "User-Agent": f"prefect-conductor-host/{__version__}",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.auth_string:
            token = base64.b64encode(self.auth_string.encode("utf-8")).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def flow_run_url(self, flow_run_id: str) -> str:
        """The flow run's page in the Prefect UI."""
        return f"{self.ui_url or ui_url_for(self.api_url)}/runs/flow-run/{flow_run_id}"


@dataclass(frozen=True)
class FlowRunLink:
    """The flow run Submit started (or found again, for the same idempotency key)."""

    id: str
    name: str
    url: str
    state: str
    created: bool
    """False when the server returned an existing run for the same idempotency key."""


def _detail(response: httpx.Response) -> str:
    """The server's own explanation from a JSON error body, cut to one short line."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
    else:
        text = str(body)
        if isinstance(body, dict):
            text = str(body.get("detail") or body.get("exception_message") or body)
    return " ".join(text.split())[:300]


class _Api:
    """One httpx client for one Submit: every call retried per the policy, errors mapped."""

    def __init__(
        self,
        settings: PrefectSettings,
        policy: RetryPolicy,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self._shared_transport = transport is not None
        self.http = httpx.Client(
            base_url=settings.api_url + "/",
            headers=settings.headers(),
            timeout=settings.timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        """Close the client, unless its transport is the caller's: closing that would cut the
        caller's other requests on it (a shared transport serves several Submits at once)."""
        if not self._shared_transport:
            self.http.close()

    def call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        def build() -> httpx.Request:
            return self.http.build_request(method, path, json=json)

        try:
            response = send_with_retries(self.http, build, self.policy)
        except (httpx.ReadTimeout, httpx.WriteTimeout) as error:  # reached, never answered
            raise PrefectUnavailable(
                f"Prefect at {self.settings.display_url} did not answer in"
                f" {self.policy.deadline:g} s ({type(error).__name__}): it is overloaded;"
                " pressing Submit again is safe, the same submission never starts a second run"
            ) from None
        except httpx.TransportError as error:
            raise PrefectUnavailable(
                f"cannot reach Prefect at {self.settings.display_url} ({type(error).__name__});"
                " is the server running, and is PREFECT_API_URL right?"
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise PrefectError(
                f"Prefect at {self.settings.display_url} refused the credentials (HTTP {status}):"
                " check PREFECT_API_KEY or PREFECT_API_AUTH_STRING"
            )
        if status >= 500 or status in (408, 425, 429):
            raise PrefectUnavailable(
                f"Prefect at {self.settings.display_url} is not answering (HTTP {status} after"
                f" {self.policy.attempts} tries): {_detail(response)}"
            )
        return response


_deployment_ids: dict[tuple[str, str], str] = {}
_deployment_ids_lock = threading.Lock()


def _deployment_id(api: _Api, deployment: str) -> str:
    """The deployment's (``flow/name``) id: kept from an earlier Submit to this server, else
    looked up."""
    key = (api.settings.api_url, deployment)
    with _deployment_ids_lock:
        known = _deployment_ids.get(key)
    if known is not None:
        return known
    flow_name, _, deployment_name = deployment.partition("/")
    found = api.call(
        "GET", f"deployments/name/{quote(flow_name, safe='')}/{quote(deployment_name, safe='')}"
    )
    if found.status_code == 404:
        raise DeploymentNotFound(
            f"Prefect at {api.settings.display_url} has no deployment {deployment!r}: deploy it"
            " with `prefect deploy --prefect-file deployments/prefect.yaml --all`"
        )
    if not found.is_success:
        raise PrefectError(
            f"cannot read deployment {deployment!r} (HTTP {found.status_code}): {_detail(found)}"
        )
    deployment_id = str(found.json()["id"])
    with _deployment_ids_lock:
        _deployment_ids[key] = deployment_id
    return deployment_id


def _forget_deployment(api_url: str, deployment: str) -> None:
    with _deployment_ids_lock:
        _deployment_ids.pop((api_url, deployment), None)


def start_flow_run(
    parameters: Mapping[str, Any],
    *,
    idempotency_key: str,
    deployment: str | None = None,
    tags: Sequence[str] = (),
    settings: PrefectSettings | None = None,
    policy: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
) -> FlowRunLink:
    """Create a flow run of ``deployment`` (``flow/deployment``) with ``parameters``; return it.

    ``deployment`` defaults to the settings' (PREFECT_CONDUCTOR_DEPLOYMENT, else
    ``render-submit/conductor``). The same ``idempotency_key`` always yields the same run.
    Raises :class:`PrefectError` (one line) when Prefect cannot be reached, refuses the
    credentials, has no such deployment, or rejects the parameters.
    """
    settings = settings or PrefectSettings.from_env()
    deployment = deployment or settings.deployment
    flow_name, _, deployment_name = deployment.partition("/")
    if not flow_name or not deployment_name:
        raise PrefectError(f"deployment {deployment!r} must be written flow/deployment")
    if policy is None:
        policy = replace(DEFAULT_POLICY, deadline=settings.submit_seconds)
    api = _Api(settings, policy, transport)
    body = {
        "parameters": dict(parameters),
        "idempotency_key": idempotency_key,
        "tags": list(tags),
    }
    try:
        deployment_id = _deployment_id(api, deployment)
        created = api.call("POST", f"deployments/{deployment_id}/create_flow_run", json=body)
        if created.status_code == 404:  # the kept id is stale: the deployment was made again
            _forget_deployment(settings.api_url, deployment)
            deployment_id = _deployment_id(api, deployment)
            created = api.call("POST", f"deployments/{deployment_id}/create_flow_run", json=body)
        if created.status_code in (409, 422):
            raise FlowRunRejected(
                f"Prefect refused the flow run of {deployment!r} (HTTP {created.status_code}):"
                f" {_detail(created)}"
            )
        if not created.is_success:
            raise PrefectError(
                f"cannot start a flow run of {deployment!r} (HTTP {created.status_code}):"
                f" {_detail(created)}"
            )
        run = created.json()
    finally:
        api.close()
    state = run.get("state") or {}
    return FlowRunLink(
        id=str(run["id"]),
        name=str(run.get("name", "")),
        url=settings.flow_run_url(str(run["id"])),
        state=str(state.get("type", "")),
        created=created.status_code == 201,
    )
