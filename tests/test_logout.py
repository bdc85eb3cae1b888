"""POST /logout: CSRF, every cookie cleared, revocation at the provider (RFC 7009) that never
holds a logout up, and RP-initiated logout by an auto-submitted POST form."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.authenticator import Authenticator, Credentials
from gateway.cache import cache_key
from gateway.config import Settings
from gateway.errors import InvalidToken
from gateway.providers import Providers
from tests.conftest import CLIENT_ID, ISSUER, PAGE_REFRESH, PUBLIC_URL, FakeIdP, SettingsFactory, SignIn

REVOKE = f"{ISSUER}/revoke"


# --- helpers the security tests share ----------------------------------------------------------------

def add_revocation(idp: FakeIdP) -> respx.Route:
    """Give the provider an RFC 7009 endpoint (before the gateway reads its discovery)."""
    idp.discovery["revocation_endpoint"] = REVOKE
    return idp.mock.post(REVOKE, name="revocation").respond(200)


def issue_refresh_tokens(idp: FakeIdP) -> list[str]:
    """Make the token endpoint hand out a refresh token with each access token (and honour it)."""
    original = idp._token
    issued: list[str] = []

    def token(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in issued:
                return httpx.Response(400, json={"error": "invalid_grant"})
            body: dict[str, Any] = {"access_token": idp.issue_token("alice"), "token_type": "Bearer",
                                    "expires_in": idp.expires_in}
        else:
            answer = original(request)
            if answer.status_code != 200:
                return answer
            body = answer.json()
        issued.append(f"r-{secrets.token_urlsafe(12)}")
        return httpx.Response(200, json={**body, "refresh_token": issued[-1]})

    idp.mock.routes["token"].mock(side_effect=token)
    return issued


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no logout form on the page"
    return found.group(1)


def cleared(response: httpx.Response) -> set[str]:
    """Names of the cookies a response deletes."""
    return {h.split("=", 1)[0] for h in response.headers.get_list("set-cookie") if "Max-Age=0" in h}


class Page(HTMLParser):
    """The forms, inputs and scripts of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, str | None]] = []
        self.inputs: list[dict[str, str | None]] = []
        self.buttons = 0
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = False
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form":
            self.forms.append(dict(attrs))
        elif tag == "input":
            self.inputs.append(dict(attrs))
        elif tag == "button":
            self.buttons += 1
        elif tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True

    def hidden(self) -> dict[str, str | None]:
        return {i["name"] or "": i.get("value") for i in self.inputs if i.get("type") == "hidden"}


def log_out(client: TestClient) -> httpx.Response:
    return client.post("/logout", data={"csrf": csrf_of(client.get("/chat").text)})


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture
def revocation(idp: FakeIdP) -> respx.Route:
    return add_revocation(idp)


@pytest.fixture
def refresh_tokens(idp: FakeIdP) -> list[str]:
    return issue_refresh_tokens(idp)


@pytest.fixture
def client(idp: FakeIdP, settings: Settings, revocation: respx.Route) -> Iterator[TestClient]:
    """conftest's client, started after the provider got its revocation endpoint."""
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


# --- CSRF and methods --------------------------------------------------------------------------------

def test_get_logout_is_405_and_changes_nothing(client: TestClient, sign_in: SignIn,
                                               revocation: respx.Route) -> None:
    sign_in(client)
    answer = client.get("/logout")
    assert answer.status_code == 405
    assert "set-cookie" not in answer.headers
    assert client.get("/chat").status_code == 200
    assert revocation.call_count == 0


@pytest.mark.parametrize("form", [{}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": "x" * 200}])
def test_logout_without_a_good_csrf_token_is_400_and_clears_nothing(client: TestClient, sign_in: SignIn,
                                                                    revocation: respx.Route,
                                                                    form: dict[str, str]) -> None:
    sign_in(client)
    answer = client.post("/logout", data=form)
    assert answer.status_code == 400
    assert "Logout refused" in answer.text
    assert "set-cookie" not in answer.headers
    assert client.get("/chat").status_code == 200
    assert revocation.call_count == 0


def test_the_csrf_token_outlives_a_refresh(client: TestClient, sign_in: SignIn,
                                           refresh_tokens: list[str]) -> None:
    # The chat page stays open across refreshes: its logout form must still work afterwards.
    sign_in(client)
    csrf = csrf_of(client.get("/chat").text)
    assert client.post("/auth/refresh", headers=PAGE_REFRESH).status_code == 204
    assert client.post("/logout", data={"csrf": csrf}).status_code == 200


# --- what a good logout does -------------------------------------------------------------------------

def test_logout_clears_every_cookie(client: TestClient, sign_in: SignIn, refresh_tokens: list[str]) -> None:
    signed_in = sign_in(client)
    set_names = {h.split("=", 1)[0] for h in signed_in.headers.get_list("set-cookie")}
    assert {"gateway_token", "gateway_refresh", "gateway_revoke", "gateway_idt"} <= set_names
    answer = log_out(client)
    assert answer.status_code == 200
    assert {"gateway_token", "gateway_token.1", "gateway_refresh", "gateway_revoke", "gateway_idt"} <= cleared(answer)
    paths = {h.split("=", 1)[0]: h for h in answer.headers.get_list("set-cookie")}
    assert "Path=/auth/refresh" in paths["gateway_refresh"] and "Path=/logout" in paths["gateway_idt"]
    assert not client.cookies
    assert client.get("/chat").status_code == 303
    assert client.post("/auth/refresh", headers=PAGE_REFRESH).status_code == 401


def test_logout_revokes_the_refresh_then_the_access_token(client: TestClient, sign_in: SignIn, idp: FakeIdP,
                                                          revocation: respx.Route,
                                                          refresh_tokens: list[str]) -> None:
    sign_in(client)
    access_token = next(iter(idp.tokens))
    log_out(client)
    assert revocation.call_count == 2
    sent = [parse_qs(call.request.content.decode()) for call in revocation.calls]
    assert sent[0] == {"token": [refresh_tokens[0]], "token_type_hint": ["refresh_token"]}
    assert sent[1] == {"token": [access_token], "token_type_hint": ["access_token"]}
    for call in revocation.calls:  # RFC 7009 §2.1: the client authenticates as at the token endpoint
        assert call.request.headers["authorization"] == "Basic " + base64.b64encode(
            f"{CLIENT_ID}:s3cret".encode()).decode()


def test_logout_revokes_the_rotated_refresh_token(client: TestClient, sign_in: SignIn,
                                                  revocation: respx.Route, refresh_tokens: list[str]) -> None:
    sign_in(client)
    assert client.post("/auth/refresh", headers=PAGE_REFRESH).status_code == 204
    log_out(client)
    assert parse_qs(revocation.calls[0].request.content.decode())["token"] == [refresh_tokens[-1]]


def test_a_public_client_names_itself_at_revocation(idp: FakeIdP, make_settings: SettingsFactory,
                                                    sign_in: SignIn) -> None:
    revocation = add_revocation(idp)
    settings = make_settings(providers={"idp": {"issuer": ISSUER, "client_id": CLIENT_ID}})
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        sign_in(client)
        log_out(client)
    request = revocation.calls.last.request
    assert "authorization" not in request.headers
    assert parse_qs(request.content.decode())["client_id"] == [CLIENT_ID]


def test_logout_after_the_access_token_cookie_expired_still_revokes(client: TestClient, sign_in: SignIn,
                                                                    revocation: respx.Route,
                                                                    refresh_tokens: list[str]) -> None:
    sign_in(client)
    csrf = csrf_of(client.get("/chat").text)
    client.cookies.delete("gateway_token")  # its Max-Age (the token's life) ran out; the others remain
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 200
    sent = [parse_qs(call.request.content.decode()) for call in revocation.calls]
    assert sent == [{"token": [refresh_tokens[0]], "token_type_hint": ["refresh_token"]}]


# --- RP-initiated logout -----------------------------------------------------------------------------

def test_the_logout_page_posts_the_id_token_to_the_end_session_endpoint(client: TestClient, sign_in: SignIn,
                                                                        idp: FakeIdP) -> None:
    token_answers: list[dict[str, Any]] = []
    original = idp._token

    def keep(request: httpx.Request) -> httpx.Response:
        answer = original(request)
        token_answers.append(answer.json())
        return answer

    idp.mock.routes["token"].mock(side_effect=keep)
    sign_in(client)
    answer = log_out(client)
    assert answer.status_code == 200 and "location" not in answer.headers
    page = Page(answer.text)
    assert page.forms == [{"id": "end-session", "method": "post", "action": "https://idp.test/logout"}]
    assert page.hidden() == {"id_token_hint": token_answers[0]["id_token"], "client_id": CLIENT_ID,
                             "post_logout_redirect_uri": "http://gateway.test/login"}
    assert page.buttons == 1  # the no-JavaScript fallback
    assert page.scripts == [{"src": "/static/logout.js", "defer": None}] and not page.inline_script


def test_the_logout_page_may_post_to_the_provider_and_nowhere_else(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client)
    answer = log_out(client)
    csp = answer.headers["content-security-policy"]
    assert "form-action 'self' https://idp.test" in csp
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp
    assert answer.headers["cache-control"] == "no-store" and answer.headers["referrer-policy"] == "no-referrer"
    # Every other page keeps the plain policy.
    assert "form-action 'self'" in client.get("/login").headers["content-security-policy"]
    assert "idp.test" not in client.get("/login").headers["content-security-policy"]


def test_logout_js_submits_the_form(client: TestClient) -> None:
    script = client.get("/static/logout.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert 'getElementById("end-session")' in script.text and ".submit()" in script.text


def test_a_provider_without_end_session_sends_the_browser_to_login(idp: FakeIdP, settings: Settings,
                                                                   sign_in: SignIn) -> None:
    del idp.discovery["end_session_endpoint"]
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        sign_in(client)
        answer = log_out(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert {"gateway_token", "gateway_idt"} <= cleared(answer)


def test_an_id_token_too_big_for_a_cookie_is_skipped_and_logout_names_the_client(client: TestClient,
                                                                                 sign_in: SignIn,
                                                                                 idp: FakeIdP) -> None:
    original = idp.id_token
    idp.id_token = lambda sub, nonce, **o: original(  # type: ignore[method-assign]
        sub, nonce, groups=[secrets.token_hex(16) for _ in range(150)])
    signed_in = sign_in(client)
    assert signed_in.status_code == 303
    assert not any(h.startswith("gateway_idt=") for h in signed_in.headers.get_list("set-cookie"))
    page = Page(log_out(client).text)
    assert page.hidden() == {"client_id": CLIENT_ID, "post_logout_redirect_uri": "http://gateway.test/login"}


def test_the_id_token_cookie_is_sealed_and_only_for_logout(client: TestClient, sign_in: SignIn) -> None:
    signed_in = sign_in(client)
    header = next(h for h in signed_in.headers.get_list("set-cookie") if h.startswith("gateway_idt="))
    for flag in ("HttpOnly", "Path=/logout", "SameSite=lax"):
        assert flag in header
    assert "eyJ" not in header  # a JWT's header; the ID token is sealed


def test_on_https_the_id_token_cookie_is_secure_prefixed(idp: FakeIdP, make_settings: SettingsFactory,
                                                         sign_in: SignIn) -> None:
    settings = make_settings(public_url="https://gateway.test")
    with TestClient(create_app(settings), base_url="https://gateway.test", follow_redirects=False) as client:
        signed_in = sign_in(client)
        header = next(h for h in signed_in.headers.get_list("set-cookie") if "gateway_idt=" in h)
        assert header.startswith("__Secure-gateway_idt=") and "Secure" in header and "Path=/logout" in header
        page = client.get("/chat").text
        answer = client.post("/logout", data={"csrf": csrf_of(page)})
        assert answer.status_code == 200
        assert {"__Host-gateway_token", "__Host-gateway_token.1", "__Secure-gateway_idt"} <= cleared(answer)
        assert Page(answer.text).hidden()["post_logout_redirect_uri"] == "https://gateway.test/login"


# --- provider trouble --------------------------------------------------------------------------------

@pytest.mark.parametrize("trouble", [httpx.Response(500), httpx.Response(503, headers={"Retry-After": "9"}),
                                     httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"),
                                     httpx.ConnectError("down")], ids=repr)
def test_revocation_trouble_never_blocks_logout(client: TestClient, sign_in: SignIn, revocation: respx.Route,
                                                refresh_tokens: list[str], trouble: Any) -> None:
    revocation.mock(side_effect=[trouble, trouble])
    sign_in(client)
    answer = log_out(client)
    assert answer.status_code == 200
    assert {"gateway_token", "gateway_refresh", "gateway_idt"} <= cleared(answer)
    assert client.get("/chat").status_code == 303
    assert revocation.call_count >= 1


def test_logout_works_with_the_provider_down(client: TestClient, sign_in: SignIn, idp: FakeIdP,
                                             revocation: respx.Route) -> None:
    sign_in(client)
    csrf = csrf_of(client.get("/chat").text)
    token = next(iter(idp.tokens))
    idp.mock.routes["userinfo"].mock(side_effect=httpx.ConnectTimeout("down"))
    revocation.mock(side_effect=httpx.ConnectTimeout("down"))
    client.app.state.gateway.authenticator.cache.forget(cache_key("idp", token))  # who it is: unknown now
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 200  # discovery is still known: the end-session form is served
    assert "gateway_token" in cleared(answer)
    # Denied all the same: refused before the (unreachable) provider is asked.
    session = client.get("/auth/session", headers={"Authorization": f"Bearer {token}"}).json()
    assert session["reason"] == "invalid_token"


# --- the deny-list's lifetime ------------------------------------------------------------------------


def _jwt_with_exp(exp: int) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'sub': 'bot', 'exp': exp})}.c2ln"


@pytest.mark.anyio
async def test_a_denied_token_is_refused_until_it_expires_and_no_longer(settings: Settings) -> None:
    now = [1_000.0]
    async with httpx.AsyncClient() as http:
        authenticator = Authenticator(settings, Providers(settings, http), clock=lambda: now[0])
    cases = [
        (Credentials("cookie-token", "cookie", "idp", expires_at=1_600.0, session_ends=9_000.0), 1_600.0),
        (Credentials(_jwt_with_exp(2_000), "header"), 2_000.0 + settings.jwt_leeway),  # its own exp, + leeway
        (Credentials("opaque-forever", "header"), 1_000.0 + settings.session_max_age),  # no known expiry
    ]
    for credentials, _ in cases:
        await authenticator.deny(credentials)
    for credentials, until in cases:
        now[0] = until - 1
        assert await authenticator.denied.denied(credentials.token)
        with pytest.raises(InvalidToken, match="signed out"):
            await authenticator.principal(credentials)
        now[0] = until
        assert not await authenticator.denied.denied(credentials.token)
    assert len(authenticator.denied) == 0  # lapsed entries are dropped
