"""Conductor credentials: the API key, and bearer tokens exchanged for it and cached safely.

The reference client sends the key's secret in a GET query string, caches tokens per domain (so
switching keys reuses another account's token), returns a stale token when a refresh fails, and
never refreshes on a 401. Here:

* the secret goes in a POST body (the GET form is a fallback only when the server has no POST);
* tokens are cached in memory and in a per-user file (0600, folder 0700) keyed by the URL *and*
  the client id, refreshed 60 s before they expire, and thrown away on a 401;
* a failed exchange raises :class:`AuthError`; the key and the token never appear in a repr, a
  log line or an exception text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from prefect_conductor.conductor_cloud.errors import UserError

REFRESH_MARGIN = 60.0
"""Seconds before expiry at which a token is replaced, so a call never carries a dying token."""


class AuthError(UserError):
    """Conductor refused the credentials, or they could not be read. Never holds a secret."""

    exit_code = 3


@dataclass(frozen=True)
class ApiKey:
    """A Conductor API key: ``client_id`` is public, ``private_key`` is the secret."""

    client_id: str
    private_key: str = field(repr=False)

    def __str__(self) -> str:
        return f"ApiKey(client_id={self.client_id!r})"

    @classmethod
    def from_text(cls, text: str, source: str = "CONDUCTOR_API_KEY") -> ApiKey:
        """Parse raw JSON or base64 of the JSON (as Conductor hands keys out)."""
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
            raise AuthError(f"{source}: not an API key (expected JSON or base64 of JSON)")
        client_id, private_key = data.get("client_id"), data.get("private_key")
        if not isinstance(client_id, str) or not isinstance(private_key, str):
            raise AuthError(f"{source}: the API key needs client_id and private_key")
        return cls(client_id=client_id, private_key=private_key)


def api_key_from_env(env: Mapping[str, str] | None = None) -> ApiKey | None:
    """The key from CONDUCTOR_API_KEY, else the file at CONDUCTOR_API_KEY_PATH, else None."""
    source = os.environ if env is None else env
    text = source.get("CONDUCTOR_API_KEY", "").strip()
    if text:
        return ApiKey.from_text(text)
    path = source.get("CONDUCTOR_API_KEY_PATH", "").strip()
    if not path:
        return None
    try:
        content = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise AuthError(f"CONDUCTOR_API_KEY_PATH: cannot read {path} ({error.strerror})") from None
    return ApiKey.from_text(content, source=f"CONDUCTOR_API_KEY_PATH ({path})")


def default_token_dir() -> Path:
    from prefect_conductor.conductor_cloud.catalog import prefect_conductor_home

    return prefect_conductor_home() / "tokens"


@dataclass
class _Token:
    value: str
    expires_at: float  # wall-clock seconds since the epoch

    def fresh(self) -> bool:
        return time.time() < self.expires_at - REFRESH_MARGIN


class TokenManager:
    """Bearer tokens for one (Conductor URL, client id): cached, refreshed, thread-safe."""

    def __init__(
        self,
        url: str,
        api_key: ApiKey,
        http: httpx.Client,
        cache_dir: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.http = http
        self.cache_dir = cache_dir or default_token_dir()
        digest = hashlib.sha256(f"{self.url}|{api_key.client_id}".encode()).hexdigest()[:32]
        self.cache_file = self.cache_dir / f"{digest}.json"
        self._lock = threading.Lock()
        self._token: _Token | None = None

    def __repr__(self) -> str:
        return f"TokenManager(url={self.url!r}, client_id={self.api_key.client_id!r})"

    def token(self) -> str:
        """A token valid for at least REFRESH_MARGIN more seconds."""
        with self._lock:
            if self._token is None or not self._token.fresh():
                self._token = self._read_cache()
            if self._token is None or not self._token.fresh():
                self._token = self._exchange()
                self._write_cache(self._token)
            return self._token.value

    def invalidate(self) -> None:
        """Forget the token (after a 401) so the next call exchanges the key again."""
        with self._lock:
            self._token = None
            self.cache_file.unlink(missing_ok=True)

    def _exchange(self) -> _Token:
        form = {
            "grant_type": "client_credentials",
            "scope": "owner admin user",
            "client_id": self.api_key.client_id,
            "client_secret": self.api_key.private_key,
        }
        endpoint = f"{self.url}/api/oauth_jwt"
        try:
            response = self.http.post(endpoint, data=form)
            if response.status_code in (404, 405):
                response = self.http.get(endpoint, params=form)
        except httpx.TransportError as error:
            raise AuthError(
                f"cannot reach Conductor at {self.url} to sign in: {type(error).__name__}"
            ) from None
        if response.status_code != 200:
            raise AuthError(
                f"Conductor at {self.url} refused the API key for client"
                f" {self.api_key.client_id!r} (HTTP {response.status_code})"
            )
        try:
            body = response.json()
            value = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"Conductor at {self.url} sent an unreadable token response") from None
        return _Token(value=value, expires_at=time.time() + expires_in)

    def _read_cache(self) -> _Token | None:
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            token = _Token(value=str(data["access_token"]), expires_at=float(data["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return token if token.fresh() else None

    def _write_cache(self, token: _Token) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = self.cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump({"access_token": token.value, "expires_at": token.expires_at}, stream)
            os.replace(temp, self.cache_file)
        except OSError:
            return  # the in-memory token still works; the cache is an optimisation
