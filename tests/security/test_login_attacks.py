"""Attacks on sign-in: replayed, foreign, missing and forged `state`; open redirects through
`next`; tampered, foreign-purpose and retired-key token cookies.

A refused callback must be refused *before* the code is exchanged (the token endpoint is not called) and
must set no token cookie; a refused cookie must be refused before any provider call.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote_from_bytes, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.cookies import TokenCookie, TokenSession
from gateway.redirects import DEFAULT_NEXT
from gateway.sealing import Sealer
from tests.conftest import OLD_SECRET, PUBLIC_URL, SECRET, FakeIdP, SettingsFactory, SignIn
from tests.test_redirects import ALLOWED_VALUES, HOSTILE_BYTES

# --- state ----------------------------------------------------------------------------------------------


def _exchanges(idp: FakeIdP) -> int:
    return int(idp.mock.routes["token"].call_count)


def _assert_sign_in_refused(response: httpx.Response) -> None:
    assert response.status_code == 400
    assert 'href="/login"' in response.text  # the error page offers a fresh start
    assert not any(h.startswith(("gateway_token=", "gateway_refresh=")) and 'gateway_token=""' not in h
                   for h in response.headers.get_list("set-cookie"))


def test_state_replay_is_400(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    # The callback URL (from history, a log, a Referer) opened again in the browser that used it: its
    # state was spent with the first use. From any other browser, see the next test.
    first = sign_in(client)
    assert first.status_code == 303
    callback = f"{first.request.url.path}?{first.request.url.query.decode()}"
    exchanges = _exchanges(idp)
    replay = client.get(callback)
    _assert_sign_in_refused(replay)
    assert _exchanges(idp) == exchanges  # refused on the state, not by the provider's spent code


def test_state_from_another_session_is_400(idp: FakeIdP, settings: Settings, client: TestClient) -> None:
    # Login CSRF: the attacker starts a sign-in with their own account and makes the victim's browser
    # finish it, so the victim would chat as the attacker.
    attacker_start = client.get("/login/idp")
    attacker_callback = idp.authorize(attacker_start.headers["location"], "attacker")
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as victim:
        for has_own_login in (False, True):
            if has_own_login:
                victim.get("/login/idp")  # the victim's own sign-in in progress
            response = victim.get(attacker_callback)
            _assert_sign_in_refused(response)
            assert "gateway_token" not in victim.cookies
    assert _exchanges(idp) == 0


def test_callback_without_state_is_400(client: TestClient, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    code = parse_qs(urlsplit(idp.authorize(start.headers["location"])).query)["code"][0]
    _assert_sign_in_refused(client.get("/auth/idp/callback", params={"code": code}))
    _assert_sign_in_refused(client.get("/auth/idp/callback", params={"code": code, "state": ""}))
    assert _exchanges(idp) == 0


def test_callback_with_forged_state_is_400(client: TestClient, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    code = parse_qs(urlsplit(idp.authorize(start.headers["location"])).query)["code"][0]
    response = client.get("/auth/idp/callback", params={"code": code, "state": secrets.token_urlsafe(22)})
    _assert_sign_in_refused(response)
    assert _exchanges(idp) == 0


# --- open redirect --------------------------------------------------------------------------------------


def test_open_redirect_corpus_lands_on_chat(client: TestClient, idp: FakeIdP) -> None:
    # All 591 vectors of oauth2-proxy's corpus, through the real flow of a default deployment.
    assert len(HOSTILE_BYTES) == 591
    escaped = {}
    for raw in HOSTILE_BYTES:
        start = client.get(f"/login/idp?next={quote_from_bytes(raw, safe='')}")
        assert start.status_code == 302
        done = client.get(idp.authorize(start.headers["location"]))
        if (done.status_code, done.headers.get("location")) != (303, DEFAULT_NEXT):
            escaped[raw] = (done.status_code, done.headers.get("location"))
    assert escaped == {}


def test_local_next_values_are_still_honoured(client: TestClient, sign_in: SignIn) -> None:
    local = [value for value in ALLOWED_VALUES if value.startswith("/")]
    assert local  # the corpus's own local target, plus ours
    for value in [*local, "/chat/room-1", "/chat?x=1"]:
        done = sign_in(client, next=value)
        assert (done.status_code, done.headers["location"]) == (303, value)


# --- cookies --------------------------------------------------------------------------------------------


def _userinfo_calls(idp: FakeIdP) -> int:
    return int(idp.mock.routes["userinfo"].call_count)


def _refused_as_no_cookie(test_client: TestClient) -> None:
    session = test_client.get("/auth/session").json()
    assert (session["authenticated"], session["reason"]) == (False, "unauthenticated")  # as if never sent
    page = test_client.get("/chat")
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2Fchat")


def _flip(value: str, index: int) -> str:
    return value[:index] + ("A" if value[index] != "A" else "B") + value[index + 1:]


def test_tampered_cookie_is_refused_before_the_provider(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    sign_in(client)
    sealed = client.cookies["gateway_token"]
    assert client.get("/auth/session").json()["authenticated"] is True
    calls = _userinfo_calls(idp)
    token = next(iter(idp.tokens))
    forged = [
        _flip(sealed, 10), _flip(sealed, len(sealed) // 2), _flip(sealed, len(sealed) - 2),  # bit flips
        sealed[:-8], sealed + "AAAA", sealed[:40] + sealed[80:],  # cut, extended, spliced
        "gAAAAA" + "A" * 120, token,  # a Fernet-looking blob; the bare token itself
        '{"p":"idp","t":"' + token + '","e":null,"a":' + str(time.time()) + "}",  # the plaintext it hides
    ]
    for value in forged:
        client.cookies.delete("gateway_token")  # replaced, as a browser holds one cookie of a name
        client.cookies.set("gateway_token", value)
        _refused_as_no_cookie(client)
    assert _userinfo_calls(idp) == calls


def test_cookie_sealed_for_another_purpose_is_refused(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    # The same keys seal the login state and the refresh token: each purpose has its own derived key.
    token = idp.issue_token("bob")
    payload = {"p": "idp", "t": token, "e": None, "a": time.time()}
    for purpose in ("login state", "refresh cookie"):
        client.cookies.set("gateway_token", Sealer([SECRET], purpose).seal(payload))
        _refused_as_no_cookie(client)
    assert _userinfo_calls(idp) == 0
    client.cookies.set("gateway_token", Sealer([SECRET], "token cookie").seal(payload))
    assert client.get("/auth/session").json()["authenticated"] is True  # the right purpose opens


@pytest.fixture
def rotated(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    """Mid-rotation: SECRET seals, OLD_SECRET still opens."""
    with TestClient(create_app(make_settings(secret_keys=[SECRET, OLD_SECRET])), base_url=PUBLIC_URL,
                    follow_redirects=False) as test_client:
        yield test_client


def _sealed_with(secret: str, token: str) -> str:
    cookie = TokenCookie(Sealer([secret], "token cookie"), https=False, max_age=3600)
    return cookie.seal(TokenSession("idp", token, None, time.time()))[0]


def test_cookie_sealed_with_a_retired_key_is_refused(client: TestClient, rotated: TestClient,
                                                     idp: FakeIdP) -> None:
    # A key leaked and was retired (dropped from GATEWAY_SECRET_KEYS): cookies sealed with it, genuine or
    # forged by whoever has the key, open no more — even around a token the provider still accepts.
    old = _sealed_with(OLD_SECRET, idp.issue_token("bob"))
    rotated.cookies.set("gateway_token", old)
    assert rotated.get("/auth/session").json()["authenticated"] is True  # during the rotation: still fine
    calls = _userinfo_calls(idp)
    client.cookies.set("gateway_token", old)  # `client` runs with SECRET only: OLD_SECRET is retired
    _refused_as_no_cookie(client)
    assert _userinfo_calls(idp) == calls
