"""Cookie tossing: a page on a sibling host (evil.<your domain>) sets cookies with `Domain=<your domain>`,
which browsers allow for every name but `__Host-` ones, and then posts to the gateway. The attacker holds
cookies the gateway genuinely sealed, for their own sign-in (mallory). Neither a second cookie of the same
name ("last wins"), nor a lone tossed cookie, nor a cross-origin POST /auth/refresh may make the victim's
browser chat as mallory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory, SignIn
from tests.security.conftest import Live, browser_sign_in, handshake
from tests.security.sessions import (
    browser_cookies,
    cookie_header,
    issue_refresh_tokens,
    named,
    same_origin,
    set_cookie_names,
    without,
)
from tests.test_logout import Page, csrf_of

HTTPS = "https://gateway.test"
REFRESH = "__Secure-gateway_refresh"


@pytest.fixture
def https_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    issue_refresh_tokens(idp)
    with TestClient(create_app(make_settings(public_url=HTTPS)), base_url=HTTPS,
                    follow_redirects=False) as client:
        yield client


def signed_in_as(client: TestClient, cookies: str) -> str | None:
    session = client.get("/auth/session", headers={"Cookie": cookies})
    user = session.json().get("user") if session.status_code == 200 else None
    return user["name"] if user else None


# --- POST /auth/refresh ------------------------------------------------------------------------------


def test_a_tossed_refresh_cookie_beside_the_victims_is_refused_as_a_duplicate(https_client: TestClient,
                                                                              sign_in: SignIn) -> None:
    mallory = browser_cookies(https_client, sign_in, "mallory")
    victim = browser_cookies(https_client, sign_in, "victim")
    # Same name, Domain=gateway.test: the browser sends both, the victim's (older) first.
    cookies = cookie_header([*victim, named(mallory, REFRESH)], "/auth/refresh")
    answer = https_client.post("/auth/refresh", headers={"Cookie": cookies, **same_origin(HTTPS)})
    assert answer.status_code == 400
    assert REFRESH in answer.json()["detail"]  # says which cookie, and what to do
    assert "__Host-gateway_token" not in set_cookie_names(answer)


def test_a_lone_tossed_refresh_cookie_cannot_swap_the_session(https_client: TestClient, sign_in: SignIn) -> None:
    mallory = browser_cookies(https_client, sign_in, "mallory")
    victim = browser_cookies(https_client, sign_in, "victim")
    # The victim's own refresh cookie is gone (its provider gave none, or it expired): only mallory's is sent.
    tossed = [*without(victim, REFRESH), named(mallory, REFRESH)]
    answer = https_client.post("/auth/refresh", headers={"Cookie": cookie_header(tossed, "/auth/refresh"),
                                                         **same_origin(HTTPS)})
    assert answer.status_code == 401
    assert "__Host-gateway_token" not in set_cookie_names(answer)
    assert signed_in_as(https_client, cookie_header(victim, "/auth/session")) == "Victim"


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.gateway.test", "X-Gateway-Refresh": "1"},  # a sibling host: same site, not same origin
    {"Origin": "null", "X-Gateway-Refresh": "1"},
    {"Origin": "http://gateway.test", "X-Gateway-Refresh": "1"},
    {"X-Gateway-Refresh": "1"},  # no Origin at all
    {"Origin": HTTPS},  # an auto-submitted form cannot add the page's header
    {"Origin": HTTPS, "X-Gateway-Refresh": "yes"},
], ids=["sibling", "null", "http", "no-origin", "no-header", "wrong-header"])
def test_refresh_from_anything_but_the_gateways_own_page_is_403(https_client: TestClient, sign_in: SignIn,
                                                                headers: dict[str, str]) -> None:
    victim = browser_cookies(https_client, sign_in, "victim")
    answer = https_client.post("/auth/refresh", headers={"Cookie": cookie_header(victim, "/auth/refresh"),
                                                         **headers})
    assert answer.status_code == 403
    assert answer.json()["error"] == "cross_site_request"
    assert "set-cookie" not in answer.headers


def test_the_chat_page_still_refreshes(https_client: TestClient, sign_in: SignIn) -> None:
    victim = browser_cookies(https_client, sign_in, "victim")
    answer = https_client.post("/auth/refresh", headers={"Cookie": cookie_header(victim, "/auth/refresh"),
                                                         **same_origin(HTTPS)})
    assert answer.status_code == 204
    assert "__Host-gateway_token" in set_cookie_names(answer)
    script = https_client.get("/static/chat.js").text
    assert '"X-Gateway-Refresh": "1"' in script


# --- duplicates elsewhere ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_duplicate_token_cookies_on_the_socket_are_400(live: Live, idp: FakeIdP) -> None:
    victim = await browser_sign_in(live, idp, "victim")
    mallory = await browser_sign_in(live, idp, "mallory")
    answer = await handshake(live.ws(), additional_headers={"Cookie": f"{victim}; {mallory}"}, origin=live.origin)
    assert answer.status_code == 400
    assert b"gateway_token" in answer.content


def test_duplicate_gateway_cookies_on_a_page_are_400_and_say_what_to_do(client: TestClient,
                                                                        sign_in: SignIn) -> None:
    victim = browser_cookies(client, sign_in, "victim")
    mallory = browser_cookies(client, sign_in, "mallory")
    cookies = cookie_header([*victim, named(mallory, "gateway_token")], "/chat")
    page = client.get("/chat", headers={"Cookie": cookies, "Accept": "text/html"})
    assert page.status_code == 400
    assert "two cookies named gateway_token" in page.text and "sign in again" in page.text
    assert "Mallory" not in page.text
    # Both copies are expired, so a reload starts clean.
    assert any(h.startswith('gateway_token=""') and "Max-Age=0" in h for h in page.headers.get_list("set-cookie"))


def test_duplicates_of_cookies_that_are_not_the_gateways_are_no_concern(client: TestClient,
                                                                        sign_in: SignIn) -> None:
    victim = browser_cookies(client, sign_in, "victim")
    cookies = cookie_header(victim, "/chat") + "; _ga=1; _ga=2; session=a; session=b"
    assert client.get("/chat", headers={"Cookie": cookies}).status_code == 200


# --- GATEWAY_COOKIE_DOMAIN: a token cookie that is __Secure-, by necessity ----------------------------


def test_a_tossed_domain_token_cookie_does_not_sign_the_victim_in_as_the_attacker(
        idp: FakeIdP, make_settings: SettingsFactory, sign_in: SignIn) -> None:
    settings = make_settings(public_url="https://chat.example.test", cookie_domain="example.test")
    with TestClient(create_app(settings), base_url="https://chat.example.test", follow_redirects=False) as client:
        mallory = browser_cookies(client, sign_in, "mallory")
        victim = browser_cookies(client, sign_in, "victim")
        # evil.example.test sets mallory's cookie with the same name, Domain and Path: it replaces the victim's.
        swapped = [*without(victim, "__Secure-gateway_token"), named(mallory, "__Secure-gateway_token")]
        page = client.get("/chat", headers={"Cookie": cookie_header(swapped, "/chat")})
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert signed_in_as(client, cookie_header(swapped, "/auth/session")) is None
        assert signed_in_as(client, cookie_header(victim, "/auth/session")) == "Victim"


# --- logout ------------------------------------------------------------------------------------------


def test_a_tossed_id_token_cookie_is_not_sent_to_the_provider_at_logout(https_client: TestClient,
                                                                        sign_in: SignIn) -> None:
    mallory = browser_cookies(https_client, sign_in, "mallory")
    victim = browser_cookies(https_client, sign_in, "victim")
    # The victim's ID token was too big to keep; mallory's is tossed in at Path=/logout.
    victim = without(victim, "__Secure-gateway_idt")
    csrf = csrf_of(https_client.get("/chat", headers={"Cookie": cookie_header(victim, "/chat")}).text)
    tossed = [*victim, named(mallory, "__Secure-gateway_idt")]
    answer = https_client.post("/logout", data={"csrf": csrf}, headers={"Cookie": cookie_header(tossed, "/logout")})
    assert answer.status_code == 200
    assert "id_token_hint" not in Page(answer.text).hidden()


# --- what the gateway sets ---------------------------------------------------------------------------


def test_every_cookie_set_on_https_is_host_prefixed_or_scoped_to_one_route(https_client: TestClient,
                                                                          sign_in: SignIn) -> None:
    victim = browser_cookies(https_client, sign_in, "victim")
    refreshed = https_client.post("/auth/refresh", headers={"Cookie": cookie_header(victim, "/auth/refresh"),
                                                            **same_origin(HTTPS)})
    assert refreshed.status_code == 204
    start = https_client.get("/login/idp")
    headers = [*start.headers.get_list("set-cookie"), *refreshed.headers.get_list("set-cookie")]
    assert {c.name for c in victim} >= {"__Host-gateway_token", "__Host-gateway_session", REFRESH}
    for header in headers:
        name, attributes = header.split("=", 1)[0], [a.strip() for a in header.split(";")[1:]]
        assert "Secure" in attributes and "HttpOnly" in attributes, header
        if "Path=/" in attributes:
            assert name.startswith("__Host-"), header
        else:  # sealed with the sign-in's session id, which the __Host- session cookie holds
            assert name in (REFRESH, "__Secure-gateway_revoke", "__Secure-gateway_idt"), header
