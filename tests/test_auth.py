"""API keys and the token manager, against the sandbox's token exchange over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from prefect_conductor.conductor_cloud.api.auth import (
    ApiKey,
    ApiKeyError,
    AuthError,
    TokenManager,
    api_key_from_env,
    default_token_dir,
)
from prefect_conductor.conductor_cloud.api.client_errors import ServerError
from prefect_conductor.conductor_cloud.api.retry import RetryPolicy
from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.sandbox.handle import SandboxHandle

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.5, deadline=5)
RAW = '{"client_id": "studio-7", "private_key": "pk-very-secret-9f8e"}'


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


def manager(sandbox: SandboxHandle, http: httpx.Client, cache: Path, **kw: object) -> TokenManager:
    key = kw.pop("key", None) or ApiKey.from_text(sandbox.api_key)
    return TokenManager(sandbox.url, key, http, cache, policy=FAST)  # type: ignore[arg-type]


def exchanges(sandbox: SandboxHandle) -> list[tuple[str, int]]:
    return [
        (r["method"], r["status"])
        for r in sandbox.state()["requests"]
        if r["path"] == "/api/oauth_jwt"
    ]


# API keys -------------------------------------------------------------------------------------


def test_key_from_raw_json_and_from_wrapped_base64() -> None:
    expected = ApiKey("studio-7", "pk-very-secret-9f8e")
    assert ApiKey.from_text(RAW) == expected
    encoded = base64.encodebytes(RAW.encode()).decode()  # wrapped every 76 characters
    assert "\n" in encoded.strip()
    assert ApiKey.from_text(encoded) == expected
    assert ApiKey.from_text(json.dumps(json.loads(RAW), indent=2)) == expected


def test_key_never_shows_its_secret() -> None:
    key = ApiKey.from_text(RAW)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "pk-very-secret-9f8e" not in text
        assert "studio-7" in text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("pk-very-secret-9f8e", "not an API key"),
        (base64.b64encode(b"pk-very-secret-9f8e").decode(), "not an API key"),
        ('["pk-very-secret-9f8e"]', "not an API key"),
        ('{"client_id": "a"}', "needs a client_id and a private_key"),
        ('{"client_id": "", "private_key": "pk-very-secret-9f8e"}', "needs a client_id"),
        ('{"client_id": "a", "private_key": 42}', "needs a client_id and a private_key"),
    ],
)
def test_a_bad_key_names_the_variable_and_hides_the_text(text: str, reason: str) -> None:
    with pytest.raises(UserError) as caught:
        api_key_from_env({"CONDUCTOR_API_KEY": text})
    message = str(caught.value)
    assert message.startswith("CONDUCTOR_API_KEY: ") and reason in message
    assert "pk-very-secret-9f8e" not in message and "\n" not in message


def test_key_sources_and_their_order(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text('{"client_id": "from-file", "private_key": "x"}\n')
    assert api_key_from_env({}) is None
    assert api_key_from_env({"CONDUCTOR_API_KEY": "  "}) is None
    assert api_key_from_env({"CONDUCTOR_API_KEY_PATH": str(path)}) == ApiKey("from-file", "x")
    both = {"CONDUCTOR_API_KEY": RAW, "CONDUCTOR_API_KEY_PATH": str(path)}
    assert api_key_from_env(both) == ApiKey("studio-7", "pk-very-secret-9f8e")


def test_key_file_problems_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ApiKeyError, match=r"CONDUCTOR_API_KEY_PATH: cannot read .*nowhere\.json"):
        api_key_from_env({"CONDUCTOR_API_KEY_PATH": str(missing)})
    garbage = tmp_path / "garbage.json"
    garbage.write_text("pk-very-secret-9f8e")
    with pytest.raises(ApiKeyError) as caught:
        api_key_from_env({"CONDUCTOR_API_KEY_PATH": str(garbage)})
    assert str(garbage) in str(caught.value)
    assert "pk-very-secret-9f8e" not in str(caught.value)


def test_key_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONDUCTOR_API_KEY", base64.b64encode(RAW.encode()).decode())
    assert api_key_from_env() == ApiKey("studio-7", "pk-very-secret-9f8e")


def test_default_token_dir_follows_the_home_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path))
    assert default_token_dir() == tmp_path / "tokens"
    monkeypatch.delenv("PREFECT_CONDUCTOR_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_token_dir() == Path.home() / ".cache" / "prefect-conductor" / "tokens"


# token exchange -------------------------------------------------------------------------------


def test_exchange_is_a_get_and_caches_privately(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    cache = tmp_path / "tokens"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)  # an existing, too-open folder is tightened
    tokens = manager(sandbox, http, cache)
    token = tokens.token()
    assert token.count(".") == 2  # the sandbox issues JWTs
    assert tokens.token() == token
    assert exchanges(sandbox) == [("GET", 200)]
    assert tokens.cache_file.parent == cache
    assert tokens.cache_file.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700
    assert len(tokens.cache_file.stem) == 64  # sha256 of url|client_id, no secret in the name
    assert ApiKey.from_text(sandbox.api_key).private_key not in tokens.cache_file.read_text()


def test_cache_is_shared_by_url_and_client_id_only(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    first = manager(sandbox, http, tmp_path).token()
    assert manager(sandbox, http, tmp_path).token() == first  # a new process, same key
    assert exchanges(sandbox) == [("GET", 200)]
    real = ApiKey.from_text(sandbox.api_key)
    other = manager(sandbox, http, tmp_path, key=ApiKey("another-client", real.private_key))
    with pytest.raises(AuthError):  # its own exchange (refused): never the other key's token
        other.token()
    assert other.cache_file != manager(sandbox, http, tmp_path).cache_file
    assert exchanges(sandbox) == [("GET", 200), ("GET", 401)]


def test_a_cache_file_others_could_write_is_not_trusted(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    tokens = manager(sandbox, http, tmp_path)
    tokens.token()
    tokens.cache_file.write_text(
        json.dumps({"access_token": "planted", "expires_at": time.time() + 3600})
    )
    tokens.cache_file.chmod(0o666)
    fresh = manager(sandbox, http, tmp_path).token()
    assert fresh != "planted"
    assert len(exchanges(sandbox)) == 2


def test_a_token_close_to_expiry_is_replaced(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    tokens = manager(sandbox, http, tmp_path)
    first = tokens.token()
    data = json.loads(tokens.cache_file.read_text())
    data["expires_at"] = time.time() + 30  # inside the 60 s margin
    data["refresh_at"] = time.time() - 30
    tokens.cache_file.write_text(json.dumps(data))
    later = manager(sandbox, http, tmp_path)
    assert later.token() != first
    assert len(exchanges(sandbox)) == 2


def test_invalidate_forgets_only_the_stale_token(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    tokens = manager(sandbox, http, tmp_path)
    stale = tokens.token()
    tokens.invalidate(stale)
    assert not tokens.cache_file.exists()
    fresh = tokens.token()
    assert fresh != stale
    tokens.invalidate(stale)  # a second thread reporting the same 401: keep the new token
    assert tokens.token() == fresh and tokens.cache_file.exists()
    tokens.invalidate()
    assert tokens.token() not in (stale, fresh)
    assert len(exchanges(sandbox)) == 3


def test_concurrent_callers_share_one_exchange(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    sandbox.faults({"method": "GET", "path": "/api/oauth_jwt", "action": "delay", "seconds": 0.3})
    managers = [manager(sandbox, http, tmp_path) for _ in range(3)]  # as separate processes would
    seen: list[str] = []

    def grab(tokens: TokenManager) -> None:
        seen.append(tokens.token())

    threads = [threading.Thread(target=grab, args=(m,)) for m in managers for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 9 and len(set(seen)) == 1
    assert exchanges(sandbox) == [("GET", 200)]


def test_exchange_sends_ciocores_query_and_the_secret_is_never_logged(
    sandbox: SandboxHandle,
    http: httpx.Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = ApiKey.from_text(sandbox.api_key)
    sent: list[httpx.Request] = []
    http.event_hooks["request"].append(sent.append)
    token = manager(sandbox, http, tmp_path).token()
    assert exchanges(sandbox) == [("GET", 200)]
    (request,) = sent
    assert request.method == "GET" and request.url.path == "/api/oauth_jwt"
    assert list(request.url.params.multi_items()) == [
        ("grant_type", "client_credentials"),
        ("scope", "owner admin user"),
        ("client_id", key.client_id),
        ("client_secret", key.private_key),
    ]
    assert request.content == b""
    assert "oauth_jwt" in caplog.text  # httpx did log the request line ...
    assert key.private_key not in caplog.text and token not in caplog.text  # ... redacted
    assert "client_secret=REDACTED" in caplog.text


def test_a_refused_key_is_one_line_without_secrets(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    real = ApiKey.from_text(sandbox.api_key)
    wrong = ApiKey(real.client_id, "pk-wrong-secret-1234")
    with pytest.raises(AuthError) as caught:
        manager(sandbox, http, tmp_path, key=wrong).token()
    error = caught.value
    assert error.status == 401 and error.exit_code == 3
    assert "refused the API key" in str(error) and "\n" not in str(error)
    for text in (str(error), repr(error), error.url, error.body, caplog.text):
        assert "pk-wrong-secret-1234" not in text
    assert exchanges(sandbox) == [("GET", 401)]  # a 401 is not retried
    assert not any(tmp_path.glob("*.json"))


def test_exchange_outage_is_retried_then_reported(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    sandbox.faults(
        {"method": "GET", "path": "/api/oauth_jwt", "status": 503, "retry_after": 0, "times": 2}
    )
    assert manager(sandbox, http, tmp_path).token()
    assert exchanges(sandbox) == [("GET", 503), ("GET", 503), ("GET", 200)]
    sandbox.faults(
        {"method": "GET", "path": "/api/oauth_jwt", "status": 500, "times": 0},
    )
    with pytest.raises(ServerError, match=r"could not issue a token \(HTTP 500\)") as caught:
        manager(sandbox, http, tmp_path / "other").token()
    assert caught.value.status == 500


def test_an_unreadable_token_answer_is_an_auth_error(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    sandbox.faults({"method": "GET", "path": "/api/oauth_jwt", "status": 200})
    with pytest.raises(AuthError, match="unreadable token answer"):
        manager(sandbox, http, tmp_path).token()


def test_redact_blanks_the_secret_and_the_held_token(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    tokens = manager(sandbox, http, tmp_path)
    token = tokens.token()
    secret = tokens.api_key.private_key
    assert tokens.redact(f"echo: {secret} / Bearer {token}") == (
        "echo: [redacted] / Bearer [redacted]"
    )
    assert secret not in repr(tokens) and token not in repr(tokens)


def test_unwritable_cache_folder_still_gives_a_token(
    sandbox: SandboxHandle, http: httpx.Client, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-folder"
        blocked.write_text("")  # even root cannot make a folder where a file is
        cache = blocked / "tokens"
    else:
        cache = tmp_path / "ro" / "tokens"
        cache.parent.mkdir()
        cache.parent.chmod(0o500)
    tokens = manager(sandbox, http, cache)
    assert tokens.token() == tokens.token()
    assert exchanges(sandbox) == [("GET", 200)]
