"""Shared fixtures: a respx-mocked OpenID provider (FakeIdP), settings, the app, and a sign-in helper."""

from __future__ import annotations

import io
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import respx
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.logs import setup_logging

pytest_plugins = ["tests.redis_support", "tests.hubs"]  # redis_url, redis_prefix; running_hubs

ISSUER = "https://idp.test"
PUBLIC_URL = "http://gateway.test"
CLIENT_ID = "gateway-client"
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
OLD_SECRET = "retired-secret-key-0123456789-abcdefghijkl"
# What the chat page sends with POST /auth/refresh, which refuses anything else (gateway.security).
PAGE_REFRESH = {"Origin": PUBLIC_URL, "X-Gateway-Refresh": "1"}


class FakeIdP:
    """A provider behind respx: discovery, JWKS, an authorize step the tests drive, token and userinfo."""

    def __init__(self, mock: respx.MockRouter, issuer: str = ISSUER, client_id: str = CLIENT_ID) -> None:
        self.mock = mock
        self.issuer = issuer
        self.client_id = client_id
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.codes: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}  # access token -> claims
        self.expires_in = 3600
        self.sid: str | None = None  # the `sid` its ID tokens carry (its session at the provider), if any
        self.discovery = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "end_session_endpoint": f"{issuer}/logout",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        }
        mock.get(f"{issuer}/.well-known/openid-configuration", name="discovery").mock(
            side_effect=lambda request: httpx.Response(200, json=self.discovery)
        )
        mock.get(f"{issuer}/jwks", name="jwks").mock(
            side_effect=lambda request: httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        )
        mock.post(f"{issuer}/token", name="token").mock(side_effect=self._token)
        mock.get(f"{issuer}/userinfo", name="userinfo").mock(side_effect=self._userinfo)

    def authorize(self, location: str, sub: str = "alice", **claims: Any) -> str:
        """Play the provider's login page: returns the callback URL (path and query) it redirects to."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"sub": sub, "nonce": query.get("nonce"), "claims": claims,
                            "redirect_uri": query["redirect_uri"], "challenge": query["code_challenge"]}
        callback = urlsplit(query["redirect_uri"])
        return f"{callback.path}?{urlencode({'code': code, 'state': query['state']})}"

    def issue_token(self, sub: str = "alice", **claims: Any) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = {"sub": sub, "name": sub.title(), "email": f"{sub}@example.com", **claims}
        return token

    def id_token(self, sub: str, nonce: str | None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": self.client_id, "iat": now, "exp": now + 300}
        if nonce:
            claims["nonce"] = nonce
        claims.update(overrides)
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or not form.get("code_verifier"):
            return httpx.Response(400, json={"error": "invalid_grant"})
        access = self.issue_token(grant["sub"], **grant["claims"])
        return httpx.Response(200, json={
            "access_token": access, "token_type": "Bearer", "expires_in": self.expires_in,
            "id_token": self.id_token(grant["sub"], grant["nonce"], **({"sid": self.sid} if self.sid else {})),
        })

    def _userinfo(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        claims = self.tokens.get(token)
        if claims is None:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return httpx.Response(200, json=claims)


@pytest.fixture
def idp() -> Iterator[FakeIdP]:
    with respx.mock(assert_all_called=False) as mock:
        # Tests talk to live gateways on loopback; only the provider is mocked (and nothing reaches out).
        mock.route(host="127.0.0.1").pass_through()
        yield FakeIdP(mock)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio, the loop the gateway serves on."""
    return "asyncio"


Logs = Callable[[Literal["text", "json"]], io.StringIO]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    """setup_logging() as `serve` calls it, writing to a buffer; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in ("werkzeug", "httpx")}

    def start(fmt: Literal["text", "json"]) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        setup_logging("info", fmt)
        return buffer

    yield start
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Any) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "public_url": PUBLIC_URL,
            "secret_keys": [SECRET],
            "providers": {"idp": {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": "s3cret",
                                  "title": "Test IdP"}},
            "history_path": str(tmp_path / "history.sqlite3"),
        }
        values.update(overrides)
        return load_settings(env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture
def client(idp: FakeIdP, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


SignIn = Callable[..., httpx.Response]


@pytest.fixture
def sign_in(idp: FakeIdP) -> SignIn:
    """Run the whole browser flow on a TestClient; returns the callback's response."""

    def run(test_client: TestClient, sub: str = "alice", next: str | None = "/chat",
            provider: str = "idp") -> httpx.Response:
        params = {"next": next} if next is not None else {}
        start = test_client.get(f"/login/{provider}", params=params)
        assert start.status_code == 302, start.text
        return test_client.get(idp.authorize(start.headers["location"], sub))

    return run
