"""Conductor credentials: the API key, and bearer tokens exchanged for it and cached safely.

The exchange is the one Conductor's own client makes (ciocore ``ApiClient``
``get_api_key_bearer_token``): ``GET /api/oauth_jwt`` with ``grant_type``, ``scope``,
``client_id`` and ``client_secret`` in the query. The secret therefore travels in a URL, so:

* httpx's request log line is redacted (a filter on the ``httpx`` logger), errors carry the URL
  without its query, and :meth:`TokenManager.redact` blanks the secret (raw and URL-encoded) in
  any text a server echoes back;
* tokens are cached in memory and in a per-user file (0600, folder 0700) keyed by the URL *and*
  the client id, replaced 60 s before they expire or when their ``aud`` claim names another host
  than the one we call (ciocore ``creds_same_domain``), and thrown away on a 401;
* an exchange is done under a thread lock and a ``filelock`` lock on the cache file, so concurrent
  callers (threads or processes, on any OS) reuse one fresh token instead of each fetching one;
* :class:`BearerAuth` is the ``httpx.Auth`` flow that signs requests and, on a 401, exchanges the
  key once more and re-sends once (ciocore never refreshes on a 401);
* a failed exchange raises :class:`AuthError`; the key and the token never appear in a repr, a
  log line or an exception text.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import filelock
import httpx

from prefect_conductor.conductor_cloud.api.client_errors import ConductorUnavailable, ServerError
from prefect_conductor.conductor_cloud.api.retry import (
    RETRY_STATUSES,
    RetryPolicy,
    redacted_url,
    send_with_retries,
)
from prefect_conductor.conductor_cloud.errors import ServiceError, UserError
from prefect_conductor.conductor_cloud.settings import get_settings

REFRESH_MARGIN = 60.0
"""Seconds before expiry at which a token is replaced, so a call never carries a dying token."""

DEFAULT_TOKEN_SECONDS = 600.0
"""Lifetime assumed when the exchange answer names none: short, so a wrong guess costs little."""

EXCHANGE_PATH = "/api/oauth_jwt"
SCOPE = "owner admin user"
SENSITIVE_QUERY_KEYS = frozenset({"client_secret", "access_token", "token", "private_key"})


class AuthError(ServiceError):
    """Conductor refused the credentials, or they could not be read. Never holds a secret.

    Raised for an unreadable key, a refused token exchange and a 401/403 from the API. Carries
    the same optional ``method``/``url``/``status``/``body`` as the client's other errors.
    """


class ApiKeyError(UserError):
    """The API key is missing, unreadable or not a key: a setting the user fixes. Never holds the
    key's text."""


@dataclass(frozen=True)
class ApiKey:
    """A Conductor API key: ``client_id`` is public, ``private_key`` is the secret."""

    client_id: str
    private_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"ApiKey(client_id={self.client_id!r})"

    @classmethod
    def from_text(cls, text: str, source: str = "CONDUCTOR_API_KEY") -> ApiKey:
        """Parse raw JSON or base64 of the JSON (as Conductor hands keys out); newlines dropped.

        ``source`` names where the text came from in the error; the text itself is never echoed.
        """
        cleaned = text.replace("\n", "").replace("\r", "").strip()
        data: object = None
        try:
            data = json.loads(cleaned)
        except ValueError:
            try:
                data = json.loads(base64.b64decode(cleaned, validate=True).decode("utf-8"))
            except (ValueError, binascii.Error, UnicodeDecodeError):
                data = None
        if not isinstance(data, dict):
            raise ApiKeyError(f"{source}: not an API key (expected JSON or base64 of JSON)")
        client_id, private_key = data.get("client_id"), data.get("private_key")
        if not (isinstance(client_id, str) and client_id.strip()) or not (
            isinstance(private_key, str) and private_key.strip()
        ):
            raise ApiKeyError(f"{source}: the API key needs a client_id and a private_key")
        return cls(client_id=client_id.strip(), private_key=private_key)


def api_key_from_env(env: Mapping[str, str] | None = None) -> ApiKey | None:
    """The key from CONDUCTOR_API_KEY, else the file at CONDUCTOR_API_KEY_PATH, else None.

    ``env`` defaults to ``os.environ`` as it is at call time.
    """
    if env is None:
        settings = get_settings()
        text = settings.api_key.get_secret_value().strip() if settings.api_key else ""
        path = str(settings.api_key_path or "")
    else:
        text = env.get("CONDUCTOR_API_KEY", "").strip()
        path = env.get("CONDUCTOR_API_KEY_PATH", "").strip()
    if text:
        return ApiKey.from_text(text)
    if not path:
        return None
    try:
        content = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ApiKeyError(f"CONDUCTOR_API_KEY_PATH: cannot read {path} ({reason})") from None
    return ApiKey.from_text(content, source=f"CONDUCTOR_API_KEY_PATH ({path})")


def default_token_dir() -> Path:
    """``tokens`` in the per-user folder (see :mod:`settings`)."""
    return get_settings().token_dir


class _RedactSecretsInUrls(logging.Filter):
    """Blank secret query values in httpx's ``HTTP Request: GET <url>`` log line.

    The token exchange puts the key's secret in its URL and httpx logs every URL at INFO, so the
    filter sits on the ``httpx`` logger for as long as the process lives.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, httpx.URL) for arg in record.args
        ):
            record.args = tuple(
                _redact_query(arg) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


def _redact_query(url: httpx.URL) -> httpx.URL:
    params = url.params
    if not any(key.lower() in SENSITIVE_QUERY_KEYS for key in params):
        return url
    cleaned = [
        (key, "REDACTED" if key.lower() in SENSITIVE_QUERY_KEYS else value)
        for key, value in params.multi_items()
    ]
    return url.copy_with(params=cleaned)


_REDACTOR = _RedactSecretsInUrls()


def install_log_redaction() -> None:
    """Attach the redacting filter to httpx's logger once (idempotent)."""
    httpx_logger = logging.getLogger("httpx")
    if _REDACTOR not in httpx_logger.filters:
        httpx_logger.addFilter(_REDACTOR)


def _claims(token: str) -> dict[str, Any]:
    """The JWT's claims, decoded without verifying (as ciocore does); {} when not a JWT."""
    try:
        body = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _domain(url: str) -> str:
    """What ciocore compares: the text after the last ``/`` (``api.conductortech.com``)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def api_url_for(url: str) -> str:
    """Conductor's API host for a dashboard URL, as ciocore derives it ("dashboard" -> "api")."""
    return url.replace("dashboard", "api")


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float  # wall-clock seconds since the epoch
    refresh_at: float  # when to stop handing it out: REFRESH_MARGIN (or half its life) earlier
    exchanged_here: bool = False  # issued to this process for this URL: no host check needed

    def fresh(self) -> bool:
        return time.time() < self.refresh_at

    def claims(self) -> dict[str, Any]:
        return _claims(self.value)

    def for_host(self, api_url: str) -> bool:
        """ciocore's ``creds_same_domain``: the ``aud`` claim names the host we call.

        Checked on tokens read back from the cache; one this process just exchanged at this
        URL is what the server issued for it, even behind a proxy whose host differs (checking
        it would exchange again on every call). A token without a readable ``aud`` is accepted:
        a wrong one is answered with a 401, which :class:`BearerAuth` handles.
        """
        if self.exchanged_here:
            return True
        audience = self.claims().get("aud")
        if not isinstance(audience, str) or not audience:
            return True
        return _domain(audience) == _domain(api_url)

    @classmethod
    def issued(cls, value: str, lifetime: float) -> _Token:
        now = time.time()
        margin = min(REFRESH_MARGIN, lifetime / 2)
        return cls(
            value=value,
            expires_at=now + lifetime,
            refresh_at=now + lifetime - margin,
            exchanged_here=True,
        )


class TokenManager:
    """Bearer tokens for one (Conductor URL, client id): cached, refreshed, thread-safe.

    :meth:`token` raises :class:`AuthError` when Conductor refuses the key or answers the exchange
    with something unreadable or a 4xx; when Conductor cannot be reached it raises
    ``ConductorUnavailable`` after the retries, and when it keeps answering 5xx/429 it raises
    ``ServerError``, so a caller can tell an outage from a bad key.
    """

    def __init__(
        self,
        url: str,
        api_key: ApiKey,
        http: httpx.Client,
        cache_dir: Path | None = None,
        *,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.http = http
        self.policy = policy or RetryPolicy()
        self.cache_dir = cache_dir or default_token_dir()
        digest = hashlib.sha256(f"{self.url}|{api_key.client_id}".encode()).hexdigest()
        self.cache_file = self.cache_dir / f"{digest}.json"
        self.api_url = api_url_for(self.url)
        self._lock = threading.Lock()
        self._token: _Token | None = None
        install_log_redaction()

    def __repr__(self) -> str:
        return f"TokenManager(url={self.url!r}, client_id={self.api_key.client_id!r})"

    def token(self) -> str:
        """A token valid for at least REFRESH_MARGIN more seconds (or half its lifetime)."""
        with self._lock:
            if self._usable(self._token):
                assert self._token is not None
                return self._token.value
            self._token = self._read_cache()
            if self._token is None:
                with self._file_lock():
                    # Another process may have refreshed while we waited for the lock.
                    self._token = self._read_cache()
                    if self._token is None:
                        self._token = self._exchange()
                        self._write_cache(self._token)
            return self._token.value

    def _usable(self, token: _Token | None) -> bool:
        return token is not None and token.fresh() and token.for_host(self.api_url)

    def account_id(self) -> str | None:
        """The account the key belongs to: the token's ``account`` claim (ciocore
        ``account_id_from_jwt``), or None when the token does not say."""
        account = _claims(self.token()).get("account")
        return str(account) if isinstance(account, str | int) and str(account) else None

    def invalidate(self, stale: str | None = None) -> None:
        """Forget the token (after a 401) so the next call exchanges the key again.

        With ``stale``, forget it only if it is still the current one: when several threads hit
        a 401 with the same token, only the first throws away the fresh replacement's predecessor.
        """
        with self._lock:
            if stale is not None and (self._token is None or self._token.value != stale):
                return
            self._token = None
            cached = self._read_cache()
            if stale is None or cached is None or cached.value == stale:
                with contextlib.suppress(OSError):
                    self.cache_file.unlink(missing_ok=True)

    def redact(self, text: str) -> str:
        """``text`` with the key's secret and the token held in memory blanked out.

        For texts that come from elsewhere (a server echoing a request back in an error body).
        """
        held = self._token
        key = self.api_key.private_key
        for secret in (key, quote_plus(key), quote(key, safe=""), held.value if held else ""):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    # exchange ---------------------------------------------------------------------------------

    def _exchange(self) -> _Token:
        """``GET /api/oauth_jwt`` with the query ciocore sends; typed errors, never the secret."""
        query = {
            "grant_type": "client_credentials",
            "scope": SCOPE,
            "client_id": self.api_key.client_id,
            "client_secret": self.api_key.private_key,
        }
        endpoint = f"{self.url}{EXCHANGE_PATH}"
        where = redacted_url(endpoint)
        try:
            response = send_with_retries(
                self.http,
                lambda: self.http.build_request("GET", endpoint, params=query),
                self.policy,
            )
        except httpx.TransportError as error:
            reason = self.redact(" ".join(str(error).split())[:120])
            raise ConductorUnavailable(
                f"cannot reach Conductor at {self.url}:"
                f" {type(error).__name__}{': ' + reason if reason else ''} (signing in)",
                method="GET",
                url=where,
            ) from None
        status = response.status_code
        if status != 200:
            if status in RETRY_STATUSES or status >= 500:
                raise ServerError(
                    f"Conductor at {self.url} could not issue a token (HTTP {status})",
                    method="GET",
                    url=where,
                    status=status,
                )
            raise AuthError(
                f"Conductor at {self.url} refused the API key for client"
                f" {self.api_key.client_id!r} (HTTP {status}): check CONDUCTOR_API_KEY",
                method="GET",
                url=where,
                status=status,
            )
        try:
            body: Any = response.json()
            value = body["access_token"]
            if not isinstance(value, str) or not value:
                raise TypeError("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_SECONDS)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AuthError(
                f"Conductor at {self.url} sent an unreadable token answer",
                method="GET",
                url=where,
                status=status,
            ) from None
        return _Token.issued(value, max(1.0, lifetime))

    # cache ------------------------------------------------------------------------------------

    def _read_cache(self) -> _Token | None:
        """The cached token, if the file is ours, private, readable and the token still fresh.

        A file someone else could have written is ignored rather than trusted.
        """
        try:
            info = self.cache_file.stat()
            if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077 != 0):
                return None
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            token = _Token(
                value=str(data["access_token"]),
                expires_at=float(data["expires_at"]),
                refresh_at=float(data.get("refresh_at", float(data["expires_at"]) - 60)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return token if self._usable(token) else None

    def _ensure_dir(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if hasattr(os, "getuid") and self.cache_dir.stat().st_mode & 0o077:
            self.cache_dir.chmod(0o700)

    def _write_cache(self, token: _Token) -> None:
        temp = self.cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._ensure_dir()
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(
                    {
                        "access_token": token.value,
                        "expires_at": token.expires_at,
                        "refresh_at": token.refresh_at,
                    },
                    stream,
                )
            os.replace(temp, self.cache_file)
        except OSError:  # the in-memory token still works; the file is a bonus
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold ``<cache>.lock`` so parallel processes exchange the key once, not each.

        ``filelock`` works on every OS. A lock not won within the policy's deadline, or a cache
        folder we cannot write, means working without it: a second exchange is harmless, a hang
        is not.
        """
        try:
            self._ensure_dir()
            lock = filelock.FileLock(
                str(self.cache_file.with_suffix(".lock")), timeout=self.policy.deadline
            )
            lock.acquire()
        except (OSError, filelock.Timeout):
            yield
            return
        try:
            yield
        finally:
            lock.release()


class BearerAuth(httpx.Auth):
    """Signs each request with a bearer token; on a 401, exchanges the key once and re-sends.

    Only requests sent with ``auth=`` carry it: the storage client and the token exchange never
    see the token. Exchange failures surface as the client's typed errors (they are not httpx
    errors, so a transport retry loop does not repeat an exchange that already retried).
    """

    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.tokens.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.tokens.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.tokens.token()}"
            yield request
