"""Token exchange and the bearer check, as Conductor's clients expect them.

``GET /api/oauth_jwt?grant_type=client_credentials&scope=...&client_id=...&client_secret=...``
takes the API key's ``client_id`` and ``private_key`` (as ``client_secret``) in its query, the
only form Conductor's clients are seen to use (ciocore api_client.py:361-399); the gate refuses
any other method or parameter, and keeps no query value in its log. It answers with an HS256
JWT whose claims ciocore decodes without verifying: ``aud`` ends with the host:port the client
called, so ciocore's ``creds_same_domain`` holds for ``CONDUCTOR_URL=http://127.0.0.1:PORT``,
and ``account`` selects the account's extra environment. A token is valid if this sandbox
issued it (it is in the store, which survives restarts) and it has not expired.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.fixture_catalog import ACCOUNT_ID

TOKEN_SECONDS = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def error(status: int, message: str) -> JSONResponse:
    """The sandbox's error body: ``{"message": ...}``."""
    return JSONResponse({"message": message}, status_code=status)


class Tokens:
    """Issues and checks bearer tokens for one sandbox."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context

    def issue(self, audience: str, seconds: int = TOKEN_SECONDS) -> str:
        """A signed JWT for ``audience``, recorded so that only tokens issued here are accepted."""
        now = int(time.time())
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "aud": audience,
            "account": ACCOUNT_ID,
            "iat": now,
            "exp": now + seconds,
            "jti": secrets.token_hex(8),
        }
        body = _b64url(json.dumps(claims).encode())
        signature = self.context.sign(f"{header}.{body}")
        token = f"{header}.{body}.{_b64url(bytes.fromhex(signature))}"
        self.context.store.add_token(token, now + seconds)
        return token

    async def exchange(self, request: Request) -> Response:
        """``GET /api/oauth_jwt``: API key in, bearer token out; a wrong key is a 401."""
        fields: dict[str, str] = dict(request.query_params.items())
        if fields.get("grant_type") != "client_credentials":
            return error(400, "grant_type: only client_credentials is accepted")
        client_id = fields.get("client_id", "")
        secret = fields.get("client_secret", "")
        expected = self.context.api_key
        if not (
            hmac.compare_digest(client_id.encode(), expected["client_id"].encode())
            and hmac.compare_digest(secret.encode(), expected["private_key"].encode())
        ):
            return error(401, "invalid client credentials")
        audience = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "access_token": self.issue(audience),
                "expires_in": TOKEN_SECONDS,
                "token_type": "Bearer",
                "scope": "owner admin user",
            }
        )

    def authorised(self, authorization: str) -> bool:
        """True for ``Bearer <a token this sandbox issued that has not expired>``."""
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.context.store.token_valid(token.strip())
