"""The sign-in flow: login page, redirect to the provider, callback, logout, session probe."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import FakeIdP, SignIn


def test_root_and_chat_redirect_to_login_without_cookie(client: TestClient) -> None:
    assert client.get("/").status_code == 303
    assert client.get("/").headers["location"] == "/chat"
    response = client.get("/chat")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fchat"


def test_login_page_lists_each_provider(client: TestClient) -> None:
    response = client.get("/login", params={"next": "/chat/room-1"})
    assert response.status_code == 200
    assert "Sign in with Test IdP" in response.text
    assert 'href="/login/idp?next=%2Fchat%2Froom-1"' in response.text


def test_login_redirects_to_provider_with_pkce_state_and_nonce(client: TestClient) -> None:
    response = client.get("/login/idp")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://idp.test/authorize"
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == ["http://gateway.test/auth/idp/callback"]
    assert query["scope"] == ["openid profile email"]
    assert "gateway_login" in response.cookies


def test_unknown_provider_is_404(client: TestClient) -> None:
    assert client.get("/login/nope").status_code == 404


def test_callback_sets_sealed_cookie_and_redirects_to_next(client: TestClient, sign_in: SignIn,
                                                            idp: FakeIdP) -> None:
    response = sign_in(client, next="/chat/room-1")
    assert response.status_code == 303
    assert response.headers["location"] == "/chat/room-1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("gateway_token=")
    for flag in ("HttpOnly", "Path=/", "SameSite=lax"):
        assert flag in cookie
    assert "Secure" not in cookie  # http public URL
    token = next(iter(idp.tokens))
    assert token not in cookie  # sealed, not readable
    page = client.get("/chat/room-1")
    assert page.status_code == 200
    assert "Signed in as <strong>Alice</strong>" in page.text


def test_session_probe(client: TestClient, sign_in: SignIn) -> None:
    assert client.get("/auth/session").json()["authenticated"] is False
    sign_in(client)
    body = client.get("/auth/session").json()
    assert body["authenticated"] is True
    assert body["user"]["name"] == "Alice"
    assert body["provider_status"] == "ok"


def test_callback_with_provider_error_is_400(client: TestClient) -> None:
    client.get("/login/idp")
    response = client.get("/auth/idp/callback", params={"error": "access_denied", "state": "x"})
    assert response.status_code == 400
    assert 'href="/login"' in response.text


def test_callback_without_state_is_400(client: TestClient) -> None:
    client.get("/login/idp")
    response = client.get("/auth/idp/callback", params={"code": "abc"})
    assert response.status_code == 400
    assert 'href="/login"' in response.text


def test_replayed_callback_is_400(client: TestClient, sign_in: SignIn) -> None:
    start = client.get("/login/idp")
    assert start.status_code == 302
    first = sign_in(client)
    assert first.status_code == 303
    replay = client.get(first.request.url.path + "?" + first.request.url.query.decode())
    assert replay.status_code == 400


def test_state_from_another_browser_is_400(idp: FakeIdP, settings, client: TestClient) -> None:
    from gateway.app import create_app

    start = client.get("/login/idp")
    callback = idp.authorize(start.headers["location"])
    with TestClient(create_app(settings), base_url="http://gateway.test", follow_redirects=False) as other:
        other.get("/login/idp")  # its own login state, not the victim's
        response = other.get(callback)
    assert response.status_code == 400
    assert "gateway_token" not in response.headers.get("set-cookie", "")


def test_failed_token_exchange_is_400(client: TestClient, idp: FakeIdP) -> None:
    idp.mock.routes["token"].mock(return_value=httpx.Response(500))
    start = client.get("/login/idp")
    response = client.get(idp.authorize(start.headers["location"]))
    assert response.status_code == 400


def test_token_endpoint_timeout_is_400(client: TestClient, idp: FakeIdP) -> None:
    idp.mock.routes["token"].mock(side_effect=httpx.ConnectTimeout("slow"))
    start = client.get("/login/idp")
    response = client.get(idp.authorize(start.headers["location"]))
    assert response.status_code == 400


def test_id_token_with_wrong_nonce_is_400(client: TestClient, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    callback = idp.authorize(start.headers["location"])
    next(iter(idp.codes.values()))["nonce"] = "forged"
    assert client.get(callback).status_code == 400


def test_id_token_from_another_issuer_is_400(client: TestClient, idp: FakeIdP) -> None:
    original = idp.id_token
    idp.id_token = lambda sub, nonce, **o: original(sub, nonce, iss="https://evil.test")  # type: ignore[method-assign]
    start = client.get("/login/idp")
    assert client.get(idp.authorize(start.headers["location"])).status_code == 400


def test_logout_needs_csrf_and_clears_cookie(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client)
    assert client.get("/logout").status_code == 405  # a GET changes nothing
    refused = client.post("/logout", data={"csrf": "forged"})
    assert refused.status_code == 400
    assert client.get("/chat").status_code == 200
    page = client.get("/chat").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    response = client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 200  # the provider's end-session form: tests/test_logout.py
    assert 'gateway_token=""' in response.headers["set-cookie"]
    assert client.get("/chat").status_code == 303


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_token_the_configured_validation_refuses_fails_sign_in_clearly(client: TestClient, idp: FakeIdP,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    # The provider signs the user in but its userinfo refuses the token it just issued (a misconfigured
    # VALIDATION/AUDIENCE looks like this): a 400 saying so, no cookie, no /chat ↔ /login loop.
    idp.mock.routes["userinfo"].mock(return_value=httpx.Response(401))
    start = client.get("/login/idp")
    response = client.get(idp.authorize(start.headers["location"]))
    assert response.status_code == 400
    assert "configuration problem" in response.text
    assert "gateway_token" not in response.headers.get("set-cookie", "")
    assert "GATEWAY_PROVIDERS__IDP__VALIDATION" in caplog.text
