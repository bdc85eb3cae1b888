"""Attacks with tokens that are not ours to accept (docs/sessions.md): another provider's, an expired one,
unsigned (alg "none") or signed with the public key as an HMAC secret. Against the chat socket of a real
uvicorn whose provider validates JWT access tokens locally with its JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.cookies import TokenCookie, TokenSession
from gateway.sealing import Sealer
from tests.conftest import CLIENT_ID, ISSUER, PUBLIC_URL, SECRET, FakeIdP, SettingsFactory
from tests.security.conftest import Live, StartGateway, handshake

pytestmark = pytest.mark.anyio

AUDIENCE = "https://chat.api.test"


@pytest.fixture
def jwt_gateway(start_gateway: StartGateway) -> Iterator[Live]:
    provider = {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": "s3cret", "validation": "jwt",
                "audience": AUDIENCE}
    with start_gateway(providers={"idp": provider}) as live:
        yield live


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 300, "name": "Alice"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(key: RSAKey, **overrides: Any) -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}, _claims(**overrides), key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def _status(live: Live, token: str) -> tuple[int, str]:
    response = await handshake(live.ws(), additional_headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.headers.get("www-authenticate", "")


async def _assert_invalid_token(live: Live, token: str) -> None:
    status, challenge = await _status(live, token)
    assert status == 401
    assert 'error="invalid_token"' in challenge  # refused as a token, not as a malformed request


async def test_another_providers_token_is_401(jwt_gateway: Live, idp: FakeIdP) -> None:
    assert (await _status(jwt_gateway, _signed(idp.key)))[0] == 101  # the real provider's token works
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # another provider, even the same key id
    # Its tokens as it issues them, and dressed up as ours (our issuer, our audience): no signature fits.
    await _assert_invalid_token(jwt_gateway, _signed(other, iss="https://other-idp.test"))
    await _assert_invalid_token(jwt_gateway, _signed(other))
    # Our provider's token for another API, and our provider's opaque tokens (a JWT-only deployment).
    await _assert_invalid_token(jwt_gateway, _signed(idp.key, aud="https://other-api.test"))
    await _assert_invalid_token(jwt_gateway, idp.issue_token("alice"))


async def test_expired_token_is_401(jwt_gateway: Live, idp: FakeIdP) -> None:
    now = int(time.time())
    await _assert_invalid_token(jwt_gateway, _signed(idp.key, iat=now - 7200, exp=now - 3600))
    await _assert_invalid_token(jwt_gateway, _signed(idp.key, exp=None))  # never expires: refused too
    assert (await _status(jwt_gateway, _signed(idp.key, exp=now + 5)))[0] == 101


async def test_jwt_alg_none_is_401(jwt_gateway: Live, idp: FakeIdP) -> None:
    payload = _b64(json.dumps(_claims()).encode())
    for alg in ("none", "None", "NONE", "nOnE"):
        header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "k1"}).encode())
        await _assert_invalid_token(jwt_gateway, f"{header}.{payload}.")
        await _assert_invalid_token(jwt_gateway, f"{header}.{payload}.{_b64(b'sig')}")


async def test_jwt_hs256_signed_with_the_public_key_is_401(jwt_gateway: Live, idp: FakeIdP) -> None:
    # Key confusion: the public key (anyone can fetch the JWKS) used as an HMAC secret.
    public_pem = idp.key.as_pem(private=False)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(_claims()).encode())}"
    signature = _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    await _assert_invalid_token(jwt_gateway, f"{signing_input}.{signature}")


def test_cookie_past_its_tokens_expiry_is_refused(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    # A browser that kept the cookie past its Max-Age, around a token the provider would still accept:
    # the sealed expiry is enforced by the gateway itself.
    token = idp.issue_token("bob")
    cookie = TokenCookie(Sealer([SECRET], "token cookie"), https=False, max_age=3600)
    expired, _ = cookie.seal(TokenSession("idp", token, time.time() - 1, time.time() - 600))
    live_one, _ = cookie.seal(TokenSession("idp", token, time.time() + 600, time.time() - 600))
    with TestClient(create_app(make_settings()), base_url=PUBLIC_URL, follow_redirects=False) as client:
        client.cookies.set("gateway_token", live_one)
        assert client.get("/auth/session").json()["authenticated"] is True
        client.cookies.set("gateway_token", expired)
        session = client.get("/auth/session").json()
        assert (session["authenticated"], session["reason"]) == (False, "invalid_token")
        assert client.get("/chat").status_code == 303
