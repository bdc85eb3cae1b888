"""Attacks on logout: forged and replayed logout forms, a bot that kept a copy of the access token, the ID
token leaking through a URL, a hostile end-session endpoint; and that a logout really ends the user's open
sockets at once (against a real uvicorn) while sparing everyone else's."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import PUBLIC_URL, FakeIdP, SignIn
from tests.security.conftest import Live, StartGateway, handshake, provider_calls
from tests.test_logout import Page, add_revocation, cleared, csrf_of


def token_of(idp: FakeIdP, sub: str) -> str:
    return next(token for token, claims in idp.tokens.items() if claims["sub"] == sub)


# --- forged logout forms (TestClient: no socket involved) ----------------------------------------------

@pytest.fixture
def victim(idp: FakeIdP, settings: Settings, sign_in: SignIn) -> Any:
    add_revocation(idp)
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        sign_in(client, "victim")
        yield client


def assert_still_signed_in(client: TestClient, idp: FakeIdP) -> None:
    assert client.get("/chat").status_code == 200
    assert idp.mock.routes["revocation"].call_count == 0
    bearer = client.get("/auth/session", headers={"Authorization": f"Bearer {token_of(idp, 'victim')}"}).json()
    assert bearer["authenticated"] is True  # not denied either


def test_a_cross_site_form_without_the_token_logs_no_one_out(victim: TestClient, idp: FakeIdP) -> None:
    # evil.test auto-submits <form method=post action=http://gateway.test/logout>; SameSite=Lax keeps the
    # cookie out of a cross-site POST anyway, but the CSRF token is what the gateway relies on.
    answer = victim.post("/logout", headers={"Origin": "https://evil.test"})
    assert answer.status_code == 400 and "set-cookie" not in answer.headers
    assert_still_signed_in(victim, idp)


def test_the_attackers_own_csrf_token_cannot_log_out_the_victim(victim: TestClient, idp: FakeIdP,
                                                                settings: Settings, sign_in: SignIn) -> None:
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as attacker:
        sign_in(attacker, "mallory")
        forged = csrf_of(attacker.get("/chat").text)  # genuinely signed by the gateway, for Mallory
    answer = victim.post("/logout", data={"csrf": forged})
    assert answer.status_code == 400 and "set-cookie" not in answer.headers
    assert_still_signed_in(victim, idp)


def test_a_logout_form_from_an_earlier_sign_in_is_refused(victim: TestClient, idp: FakeIdP,
                                                          sign_in: SignIn) -> None:
    old = csrf_of(victim.get("/chat").text)
    sign_in(victim, "victim")  # a new sign-in in the same browser
    answer = victim.post("/logout", data={"csrf": old})
    assert answer.status_code == 400
    assert victim.get("/chat").status_code == 200


def test_get_logout_is_not_a_logout(victim: TestClient, idp: FakeIdP) -> None:
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        answer = victim.request(method, "/logout")
        assert answer.status_code == 405, method
        assert "set-cookie" not in answer.headers
    assert_still_signed_in(victim, idp)


# --- the ID token stays out of URLs ------------------------------------------------------------------

def test_the_id_token_never_sits_in_a_url(victim: TestClient, idp: FakeIdP) -> None:
    answer = victim.post("/logout", data={"csrf": csrf_of(victim.get("/chat").text)})
    page = Page(answer.text)
    id_token = page.hidden()["id_token_hint"]
    assert id_token and id_token.count(".") == 2
    assert "location" not in answer.headers
    assert page.forms[0]["method"] == "post" and "?" not in (page.forms[0]["action"] or "")
    assert answer.text.count(id_token) == 1  # the hidden input, nowhere else
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"  # not kept in the browser's cache either
    access_token = token_of(idp, "victim")
    assert access_token not in answer.text and all(access_token not in v for v in answer.headers.values())


@pytest.mark.parametrize("endpoint", [
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://idp.test; script-src *",
    "https://idp.test'/logout",
    "//idp.test/logout",
    "https://user@evil.test/logout",
    "https://idp.test/logout#frag",
])
def test_a_hostile_end_session_endpoint_is_not_used(idp: FakeIdP, settings: Settings, sign_in: SignIn,
                                                    endpoint: str) -> None:
    idp.discovery["end_session_endpoint"] = endpoint
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        sign_in(client)
        answer = client.post("/logout", data={"csrf": csrf_of(client.get("/chat").text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert "gateway_token" in cleared(answer)  # signed out of the gateway all the same
    csp = answer.headers["content-security-policy"]
    assert csp.endswith("form-action 'self'") and "script-src 'self';" in csp


# --- live: sockets and copies of the token -----------------------------------------------------------

@asynccontextmanager
async def browser(live: Live, idp: FakeIdP, sub: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in on the live gateway, its cookie jar kept for the logout."""
    async with httpx.AsyncClient(base_url=live.origin, follow_redirects=False) as client:
        start = await client.get("/login/idp")
        done = await client.get(idp.authorize(start.headers["location"], sub))
        assert done.status_code == 303, done.text
        yield client


def socket_cookie(client: httpx.AsyncClient) -> str:
    """The Cookie header the browser sends on the socket's handshake (Path=/ cookies only)."""
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar if c.path == "/")


async def joined(ws: ClientConnection) -> None:
    kinds = [json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] for _ in range(3)]
    assert kinds == ["welcome", "history", "presence"]


async def until_closed(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    return frames


async def pong(ws: ClientConnection) -> bool:
    await ws.send(json.dumps({"type": "ping"}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] not in ("join", "leave", "presence"):
            return bool(frame == {"type": "pong"})


@pytest.mark.anyio
async def test_logout_closes_that_users_sockets_within_a_second(live: Live, idp: FakeIdP) -> None:
    async with browser(live, idp, "vic") as vic:
        csrf = csrf_of((await vic.get("/chat")).text)
        copy = token_of(idp, "vic")  # what a bot of Vic's kept
        other = idp.issue_token("olga")
        async with connect(live.ws(), additional_headers={"Cookie": socket_cookie(vic)},
                           origin=live.origin) as tab, \
                connect(live.ws(), additional_headers={"Authorization": f"Bearer {copy}"}) as bot, \
                connect(live.ws(), additional_headers={"Authorization": f"Bearer {other}"}) as olga:  # type: ignore[arg-type]
            for ws in (tab, bot, olga):
                await joined(ws)
            started = time.monotonic()
            answer = await vic.post("/logout", data={"csrf": csrf})
            assert answer.status_code == 200
            for ws in (tab, bot):
                frames = await until_closed(ws, 1.0)
                assert ws.close_code == 4401
                assert {"type": "error", "code": "token_expired", "message": "signed out"} in frames
            assert time.monotonic() - started < 1.0
            assert await pong(olga)  # someone else's socket stays open
            assert olga.close_code is None


@pytest.mark.anyio
async def test_a_copy_of_the_token_is_refused_after_logout_while_the_provider_still_accepts_it(
        start_gateway: StartGateway, idp: FakeIdP) -> None:
    # No invalid-answer cache at all: the refusal comes from the deny-list, which lasts until the token's
    # expiry. The provider has no revocation endpoint: it goes on saying "valid".
    with start_gateway(invalid_cache_ttl=0, validation_cache_ttl=0.1) as live:
        async with browser(live, idp, "vic") as vic:
            csrf = csrf_of((await vic.get("/chat")).text)
            copy = token_of(idp, "vic")
            bearer = {"Authorization": f"Bearer {copy}"}
            assert (await handshake(live.ws(), additional_headers=bearer)).status_code == 101
            assert (await vic.post("/logout", data={"csrf": csrf})).status_code == 200
        await asyncio.sleep(0.2)  # any cached "valid" would have lapsed by now anyway
        calls = provider_calls(idp)
        refused = await handshake(live.ws(), additional_headers=bearer)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        async with httpx.AsyncClient(base_url=live.origin) as bot:
            session = (await bot.get("/auth/session", headers=bearer)).json()
        assert session["authenticated"] is False and session["reason"] == "invalid_token"
        assert copy in idp.tokens  # the provider would still say "valid"...
        assert provider_calls(idp) == calls  # ...but it was not even asked
