"""trigger.py: flow runs created over Prefect's REST API, on a real server and on a scripted one.

The real server (``prefect_server``) proves the request shapes, the idempotency key and the
parameter schema check. A tiny scripted HTTP server on loopback plays a Prefect that answers 503
twice (a busy SQLite database), refuses credentials or has no such deployment, which a real server
cannot be asked to do on cue; it records what it received (headers included).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.host_export.trigger import (
    DeploymentNotFound,
    FlowRunRejected,
    PrefectError,
    PrefectSettings,
    PrefectUnavailable,
    start_flow_run,
    ui_url_for,
)
from prefect_conductor.processes import free_port
from tests.host_scenes import Shot, build_shot
from tests.prefect_server import HOST_TESTS_DEPLOYMENT, flow_runs, register_deployment

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, deadline=5.0)
DEPLOYMENT = f"render-submit/{HOST_TESTS_DEPLOYMENT}"


def parameters(title: str) -> dict[str, Any]:
    job = ConductorJob(title=title, images=["project://scene/beauty"], project="default")
    return {
        "job": job.model_dump(mode="json"),
        "scene": {"project_path": "/shows/x/shot.project"},
        "options": {"submission_key": f"key-{title}", "submitted_by": "alice"},
    }


# ----------------------------------------------------------------------------- a real server


@pytest.mark.e2e
def test_a_flow_run_is_created_once_per_key(prefect_server: str) -> None:
    deployment_id = register_deployment(prefect_server)
    settings = PrefectSettings(api_url=prefect_server)
    sent = parameters("trigger once")
    first = start_flow_run(
        sent, idempotency_key="trigger-once", deployment=DEPLOYMENT, settings=settings, tags=["t"]
    )
    again = start_flow_run(
        sent, idempotency_key="trigger-once", deployment=DEPLOYMENT, settings=settings
    )
    assert first.created and not again.created
    assert again.id == first.id
    assert first.state == "SCHEDULED"
    assert first.url == f"{prefect_server.removesuffix('/api')}/runs/flow-run/{first.id}"
    stored = [r for r in flow_runs(prefect_server, deployment_id) if r["id"] == first.id]
    assert len(stored) == 1
    assert stored[0]["parameters"] == sent
    assert "t" in stored[0]["tags"]
    other = start_flow_run(
        parameters("trigger other"),
        idempotency_key="trigger-other",
        deployment=DEPLOYMENT,
        settings=settings,
    )
    assert other.created and other.id != first.id


@pytest.mark.e2e
def test_parameters_outside_the_schema_are_refused_in_one_line(prefect_server: str) -> None:
    register_deployment(prefect_server)
    settings = PrefectSettings(api_url=prefect_server)
    sent = parameters("bad")
    del sent["scene"]
    with pytest.raises(FlowRunRejected) as caught:
        start_flow_run(sent, idempotency_key="bad", deployment=DEPLOYMENT, settings=settings)
    message = str(caught.value)
    assert "\n" not in message
    assert "HTTP 409" in message and "scene" in message


@pytest.mark.e2e
def test_an_unknown_deployment_says_how_to_deploy(prefect_server: str) -> None:
    settings = PrefectSettings(api_url=prefect_server)
    with pytest.raises(DeploymentNotFound, match=r"no deployment 'render-submit/nope'.*deploy"):
        start_flow_run({}, idempotency_key="k", deployment="render-submit/nope", settings=settings)


# ----------------------------------------------------------------------------- a scripted server


@dataclass
class Scripted:
    """Answers per (method, path suffix): a queue of (status, body); the last one repeats."""

    answers: dict[tuple[str, str], list[tuple[int, Any]]]
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    delays: list[float] = field(default_factory=list)
    """Seconds to wait before answering each request, in order (then none)."""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    script = Scripted(answers={})

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            script.received.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            if script.delays:
                time.sleep(script.delays.pop(0))
            for (method, suffix), queue in script.answers.items():
                if method == self.command and self.path.endswith(suffix):
                    status, payload = queue.pop(0) if len(queue) > 1 else queue[0]
                    break
            else:
                status, payload = 404, {"detail": "Not Found"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    yield script
    server.shutdown()
    server.server_close()


DEPLOYMENT_JSON = {"id": "d-1", "name": "submit-to-conductor"}
RUN_JSON = {"id": "r-1", "name": "silver-fox", "state": {"type": "SCHEDULED"}}


def test_503_is_retried_until_prefect_answers(scripted: Scripted) -> None:
    busy = (503, {"exception_message": "Service Unavailable"})
    scripted.answers = {
        ("GET", "/deployments/name/render-submit/submit-to-conductor"): [
            busy,
            busy,
            (200, DEPLOYMENT_JSON),
        ],
        ("POST", "/deployments/d-1/create_flow_run"): [busy, busy, (201, RUN_JSON)],
    }
    link = start_flow_run(
        {"job": {}}, idempotency_key="k-503", settings=PrefectSettings(scripted.url), policy=FAST
    )
    assert link.id == "r-1" and link.created
    assert [r["method"] for r in scripted.received] == ["GET"] * 3 + ["POST"] * 3
    posts = [r["body"] for r in scripted.received if r["method"] == "POST"]
    assert all(body["idempotency_key"] == "k-503" for body in posts)  # a retry is the same run


def test_a_second_submit_to_the_same_server_is_one_call(scripted: Scripted) -> None:
    scripted.answers = {
        ("GET", "/deployments/name/render-submit/submit-to-conductor"): [(200, DEPLOYMENT_JSON)],
        ("POST", "/deployments/d-1/create_flow_run"): [(201, RUN_JSON)],
    }
    settings = PrefectSettings(scripted.url)
    for key in ("k-1", "k-2", "k-3"):
        start_flow_run({}, idempotency_key=key, settings=settings, policy=FAST)
    assert [r["method"] for r in scripted.received] == ["GET", "POST", "POST", "POST"]


def test_a_deployment_made_again_is_looked_up_again(scripted: Scripted) -> None:
    """A kept id the server no longer knows (404) is looked up once more, then used."""
    scripted.answers = {
        ("GET", "/deployments/name/render-submit/submit-to-conductor"): [
            (200, DEPLOYMENT_JSON),
            (200, {"id": "d-2", "name": "submit-to-conductor"}),
        ],
        ("POST", "/deployments/d-1/create_flow_run"): [(201, RUN_JSON), (404, {"detail": "gone"})],
        ("POST", "/deployments/d-2/create_flow_run"): [(201, {**RUN_JSON, "id": "r-2"})],
    }
    settings = PrefectSettings(scripted.url)
    assert start_flow_run({}, idempotency_key="a", settings=settings, policy=FAST).id == "r-1"
    assert start_flow_run({}, idempotency_key="b", settings=settings, policy=FAST).id == "r-2"
    assert [r["path"].rsplit("/", 2)[-2] for r in scripted.received] == [
        "render-submit",
        "d-1",
        "d-1",
        "render-submit",
        "d-2",
    ]


def test_an_answer_lost_to_a_slow_server_is_asked_again_with_the_same_key(
    scripted: Scripted,
) -> None:
    """The first POST is answered after the read timeout: the retry carries the same key, so
    Prefect returns the one run it made (HTTP 200), and Submit reports that run."""
    scripted.answers = {
        ("GET", "/deployments/name/render-submit/submit-to-conductor"): [(200, DEPLOYMENT_JSON)],
        ("POST", "/deployments/d-1/create_flow_run"): [(201, RUN_JSON), (200, RUN_JSON)],
    }
    scripted.delays = [0.0, 1.5]  # the GET at once, the first POST too late
    settings = PrefectSettings(scripted.url, timeout=httpx.Timeout(1.0))
    link = start_flow_run({}, idempotency_key="slow", settings=settings, policy=FAST)
    assert link.id == "r-1"
    posts = [r["body"]["idempotency_key"] for r in scripted.received if r["method"] == "POST"]
    assert posts == ["slow", "slow"]


def test_a_server_that_never_answers_in_time_is_one_line_saying_retry_is_safe(
    scripted: Scripted,
) -> None:
    scripted.answers = {("GET", "/submit-to-conductor"): [(200, DEPLOYMENT_JSON)]}
    scripted.delays = [0.6] * 10
    settings = PrefectSettings(scripted.url, timeout=httpx.Timeout(0.3))
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, deadline=1.0)
    with pytest.raises(PrefectUnavailable) as caught:
        start_flow_run({}, idempotency_key="k", settings=settings, policy=policy)
    assert str(caught.value) == (
        f"Prefect at {scripted.url} did not answer in 1 s (ReadTimeout): it is overloaded;"
        " pressing Submit again is safe, the same submission never starts a second run"
    )


def test_a_transport_shared_by_several_submits_stays_open(scripted: Scripted) -> None:
    """A caller's transport (one pool for many Submits at once) is not closed by each Submit:
    closing it cut the others' requests short (ReadError)."""
    scripted.answers = {
        ("GET", "/deployments/name/render-submit/submit-to-conductor"): [(200, DEPLOYMENT_JSON)],
        ("POST", "/deployments/d-1/create_flow_run"): [(201, RUN_JSON)],
    }

    class Shared(httpx.HTTPTransport):
        closed = 0

        def close(self) -> None:
            self.closed += 1
            super().close()

    shared = Shared()
    settings = PrefectSettings(scripted.url)
    for key in ("k-1", "k-2"):
        start_flow_run({}, idempotency_key=key, settings=settings, policy=FAST, transport=shared)
    assert shared.closed == 0
    shared.close()


def test_the_submit_deadline_is_a_setting_checked_in_one_line() -> None:
    base = {"PREFECT_API_URL": "http://prefect:4200/api"}
    assert PrefectSettings.from_env(base).submit_seconds == 20.0
    assert (
        PrefectSettings.from_env({**base, "PREFECT_CONDUCTOR_SUBMIT_SECONDS": "45"}).submit_seconds
        == 45.0
    )
    for bad in ("soon", "0", "-3", "nan", "99999"):
        with pytest.raises(PrefectError, match="PREFECT_CONDUCTOR_SUBMIT_SECONDS=.* seconds"):
            PrefectSettings.from_env({**base, "PREFECT_CONDUCTOR_SUBMIT_SECONDS": bad})


def test_prefect_still_busy_after_the_retries_is_one_line(scripted: Scripted) -> None:
    scripted.answers = {
        ("GET", "/submit-to-conductor"): [(503, {"exception_message": "Service Unavailable"})]
    }
    with pytest.raises(PrefectUnavailable) as caught:
        start_flow_run({}, idempotency_key="k", settings=PrefectSettings(scripted.url), policy=FAST)
    assert str(caught.value) == (
        f"Prefect at {scripted.url} is not answering (HTTP 503 after 4 tries): Service Unavailable"
    )
    assert len(scripted.received) == 4


def test_prefect_down_is_one_line_naming_the_address() -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(PrefectUnavailable) as caught:
        start_flow_run({}, idempotency_key="k", settings=PrefectSettings(url), policy=FAST)
    assert str(caught.value) == (
        f"cannot reach Prefect at {url} (ConnectError); is the server running, and is"
        " PREFECT_API_URL right?"
    )


def test_credentials_are_sent_and_never_shown(scripted: Scripted) -> None:
    scripted.answers = {("GET", "/submit-to-conductor"): [(401, {"detail": "Unauthorized"})]}
    bearer = PrefectSettings.from_env(
        {"PREFECT_API_URL": scripted.url, "PREFECT_API_KEY": "pnu_secret123"}
    )
    with pytest.raises(PrefectError) as caught:
        start_flow_run({}, idempotency_key="k", settings=bearer, policy=FAST)
    assert "pnu_secret123" not in str(caught.value) + repr(bearer)
    assert "refused the credentials (HTTP 401)" in str(caught.value)
    assert scripted.received[-1]["headers"]["Authorization"] == "Bearer pnu_secret123"
    basic = PrefectSettings.from_env(
        {"PREFECT_API_URL": scripted.url, "PREFECT_API_AUTH_STRING": "admin:pa55"}
    )
    with pytest.raises(PrefectError) as caught:
        start_flow_run({}, idempotency_key="k", settings=basic, policy=FAST)
    expected = "Basic " + base64.b64encode(b"admin:pa55").decode()
    assert scripted.received[-1]["headers"]["Authorization"] == expected
    assert "pa55" not in str(caught.value) + repr(basic)
    assert len(scripted.received) == 2  # a 401 is never retried


def test_settings_come_from_prefects_own_variables() -> None:
    with pytest.raises(PrefectError, match="PREFECT_API_URL is not set"):
        PrefectSettings.from_env({})
    settings = PrefectSettings.from_env(
        {
            "PREFECT_API_URL": "http://prefect:4200/api/",
            "PREFECT_UI_URL": "https://prefect.studio.example/",
            "PREFECT_CONDUCTOR_DEPLOYMENT": "render-submit/gpu",
        }
    )
    assert settings.api_url == "http://prefect:4200/api"
    assert settings.deployment == "render-submit/gpu"
    assert settings.flow_run_url("r-1") == "https://prefect.studio.example/runs/flow-run/r-1"


@pytest.mark.usefixtures("cli_subprocess")
def test_the_host_plugin_imports_no_prefect() -> None:
    """The host's Python may be older than Prefect supports, and Submit must stay light."""
    import subprocess
    import sys

    from tests.host_standin.fixtures import standin_environment

    code = (
        "import sys, ix\n"
        "from prefect_conductor.host_export import startup, trigger, batch_export, preview\n"
        "assert ix.application.get_factory().get_classes().exists('ConductorJob')\n"
        "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code],
        env=standin_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"


def test_ui_links_for_self_hosted_and_cloud() -> None:
    assert ui_url_for("http://user:pw@prefect:4200/api") == "http://prefect:4200"
    cloud = "https://api.prefect.cloud/api/accounts/a1/workspaces/w2"
    assert ui_url_for(cloud) == "https://app.prefect.cloud/account/a1/workspace/w2"


# ----------------------------------------------------------------------------- through the host


def test_submit_with_prefect_down_logs_one_line_and_does_not_crash(
    host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.host_scenes import OFFLINE_CONDUCTOR, cache_offline_catalog

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("CONDUCTOR_URL", OFFLINE_CONDUCTOR)
    cache_offline_catalog()
    shot: Shot = build_shot(host, tmp_path)
    job = host.ui_create("ConductorJob", "ConductorJob")
    host.ui_add(job, "images", shot.beauty)
    host.ui_press(job, "refresh")
    host.ui_choose(job, "project", "default")
    import prefect_conductor.host_export.trigger as trigger

    monkeypatch.setattr(trigger, "DEFAULT_POLICY", FAST)
    host.ui_press(job, "submit")
    errors = host.lines("error")
    assert len(errors) == 1
    assert errors[0].startswith("ConductorJob project://scene/ConductorJob: Submit: cannot reach")
    assert host.messages == []  # no "started" box
