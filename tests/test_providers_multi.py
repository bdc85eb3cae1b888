"""Several providers at once: the login page offers each; the cookie records who issued
its token; a header JWT goes to the provider its `iss` names, an opaque one to GATEWAY_DEFAULT_PROVIDER;
a token from one provider never validates at another."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import respx
from joserfc import jwt
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.security import CurrentUser
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory

ISSUER_A = "https://idp-a.test"
ISSUER_B = "https://idp-b.test"


# Each provider behind its own respx router: FakeIdP names its routes ("discovery", "userinfo", ...), and a
# second FakeIdP on the same router would take those names over from the first.
@pytest.fixture
def idp_a() -> Iterator[FakeIdP]:
    with respx.mock(assert_all_called=False) as mock:
        yield FakeIdP(mock, issuer=ISSUER_A, client_id="client-a")


@pytest.fixture
def idp_b(idp_a: FakeIdP) -> Iterator[FakeIdP]:
    with respx.mock(assert_all_called=False) as mock:
        yield FakeIdP(mock, issuer=ISSUER_B, client_id="client-b")


def _settings(make_settings: SettingsFactory, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None,
              **overrides: Any) -> Settings:
    providers: dict[str, Any] = {
        "a": {"issuer": ISSUER_A, "client_id": "client-a", "client_secret": "secret-a", "title": "Alpha", **(a or {})},
        "b": {"issuer": ISSUER_B, "client_id": "client-b", "client_secret": "secret-b", "title": "Beta", **(b or {})},
    }
    return make_settings(providers=providers, **overrides)


@contextmanager
def _gateway(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return user.public()

    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as client:
        yield client


def _sign_in(client: TestClient, idp: FakeIdP, name: str, sub: str = "alice") -> httpx.Response:
    start = client.get(f"/login/{name}", params={"next": "/chat"})
    assert start.status_code == 302
    assert start.headers["location"].startswith(f"{idp.issuer}/authorize?")
    return client.get(idp.authorize(start.headers["location"], sub))


def _access_jwt(idp: FakeIdP, sub: str, **claims: Any) -> str:
    """A JWT access token as `idp` would mint it for its own client (signed with its published key)."""
    now = int(time.time())
    body = {"iss": idp.issuer, "sub": sub, "aud": idp.client_id, "iat": now, "exp": now + 300, "name": sub.title(),
            "scope": "openid profile email", **claims}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, body, idp.key)


def _calls(idp: FakeIdP, route: str) -> int:
    return idp.mock.routes[route].call_count


def test_login_page_offers_each_provider(idp_a: FakeIdP, idp_b: FakeIdP, make_settings: SettingsFactory) -> None:
    with _gateway(_settings(make_settings)) as client:
        page = client.get("/login", params={"next": "/chat"}).text
    assert "Sign in with Alpha" in page and "Sign in with Beta" in page
    assert 'href="/login/a?next=%2Fchat"' in page
    assert 'href="/login/b?next=%2Fchat"' in page


def test_signing_in_at_b_records_b_in_the_cookie(idp_a: FakeIdP, idp_b: FakeIdP,
                                                 make_settings: SettingsFactory) -> None:
    with _gateway(_settings(make_settings)) as client:  # no default: "a", the first, would get opaque tokens
        callback = _sign_in(client, idp_b, "b")
        assert callback.status_code == 303, callback.text
        session = client.get("/auth/session").json()
        assert session["authenticated"] is True
        assert session["user"]["id"] == "b:alice"
        assert session["user"]["provider"] == "b"
        assert client.get("/chat").status_code == 200
    assert _calls(idp_b, "userinfo") >= 1
    assert _calls(idp_a, "userinfo") == 0
    assert _calls(idp_a, "token") == 0


def test_header_jwt_is_routed_by_its_issuer(idp_a: FakeIdP, idp_b: FakeIdP, make_settings: SettingsFactory) -> None:
    settings = _settings(make_settings, a={"validation": "jwt"}, default_provider="b")
    with _gateway(settings) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {_access_jwt(idp_a, 'carol')}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "a:carol", "name": "Carol"}
    assert _calls(idp_a, "jwks") >= 1
    assert _calls(idp_b, "userinfo") == 0


def test_opaque_header_token_goes_to_the_default_provider(idp_a: FakeIdP, idp_b: FakeIdP,
                                                          make_settings: SettingsFactory) -> None:
    with _gateway(_settings(make_settings, default_provider="b")) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {idp_b.issue_token('dave')}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "b:dave", "name": "Dave"}
    assert _calls(idp_a, "userinfo") == 0


def test_opaque_token_from_a_never_validates_at_b(idp_a: FakeIdP, idp_b: FakeIdP,
                                                  make_settings: SettingsFactory) -> None:
    token = idp_a.issue_token("erin")  # valid at A
    with _gateway(_settings(make_settings, default_provider="b")) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert _calls(idp_b, "userinfo") == 1
    assert _calls(idp_a, "userinfo") == 0  # never asked: the token went where routing sent it, and only there


def test_jwt_signed_by_a_claiming_b_as_issuer_fails_at_b(idp_a: FakeIdP, idp_b: FakeIdP,
                                                         make_settings: SettingsFactory) -> None:
    settings = _settings(make_settings, a={"validation": "jwt"}, b={"validation": "jwt"})
    forged = _access_jwt(idp_a, "mallory", iss=ISSUER_B, aud="client-b")  # same kid "k1", A's key
    with _gateway(settings) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert _calls(idp_a, "jwks") == 0


def test_cookie_of_a_provider_no_longer_configured_is_signed_out(idp_a: FakeIdP, idp_b: FakeIdP,
                                                                 make_settings: SettingsFactory) -> None:
    with _gateway(_settings(make_settings)) as client:
        assert _sign_in(client, idp_b, "b").status_code == 303
        cookie = client.cookies["gateway_token"]
    checked_at_b = _calls(idp_b, "userinfo")
    only_a = make_settings(providers={"a": {"issuer": ISSUER_A, "client_id": "client-a", "client_secret": "secret-a"}})
    with _gateway(only_a) as client:
        headers = {"Cookie": f"gateway_token={cookie}"}
        page = client.get("/chat", headers=headers)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fchat"
        session = client.get("/auth/session", headers=headers).json()
        assert (session["authenticated"], session["reason"]) == (False, "invalid_token")
    assert _calls(idp_b, "userinfo") == checked_at_b
    assert _calls(idp_a, "userinfo") == 0
