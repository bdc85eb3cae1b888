"""A real run: `gateway demo` with its embedded OpenID provider, signed into over HTTP by filling the
provider's own form, then two chat clients (a browser's cookie and a bot's bearer token) talk."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.demo_process import running_demo


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with running_demo() as base:
        yield base



def sign_in(base: str, user: str) -> str:
    """Follow the real flow like a browser: /chat → /login → provider form → callback → /chat.
    Returns the token cookie's value."""
    with httpx.Client(base_url=base, follow_redirects=False, timeout=10) as browser:
        return _sign_in(browser, user)


def _sign_in(browser: httpx.Client, user: str) -> str:
    first = browser.get("/chat")
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fchat"
    login = browser.get(first.headers["location"])
    assert "Sign in with Demo provider" in login.text
    link = unescape(re.search(r'href="(/login/demo[^"]*)"', login.text).group(1))  # type: ignore[union-attr]
    to_provider = browser.get(link)
    assert to_provider.status_code == 302
    authorize_url = to_provider.headers["location"]
    form = httpx.get(authorize_url, timeout=10)
    assert 'name="sub"' in form.text  # the provider's page asks for a user name
    answer = httpx.post(authorize_url, data={"sub": user}, follow_redirects=False, timeout=10)
    assert answer.status_code == 302
    callback = httpx.URL(answer.headers["location"])
    done = browser.get(callback.raw_path.decode())
    assert done.status_code == 303 and done.headers["location"] == "/chat"
    page = browser.get("/chat")
    assert page.status_code == 200
    assert f"Signed in as <strong>{user}</strong>" in page.text
    cookie: str = browser.cookies["gateway_token"]
    return cookie


def test_sign_in_through_the_real_provider(demo: str) -> None:
    cookie = sign_in(demo, "alice")
    session = httpx.get(f"{demo}/auth/session", cookies={"gateway_token": cookie}).json()
    assert session["authenticated"] is True and session["user"]["name"] == "alice"


@pytest.mark.anyio
async def test_cookie_and_bearer_clients_chat(demo: str) -> None:
    alice, bob = await asyncio.to_thread(sign_in, demo, "alice"), await asyncio.to_thread(sign_in, demo, "bob")
    # A bot uses the provider's access token directly; get one by signing in at the provider as "bot".
    ws_url = demo.replace("http://", "ws://") + "/ws/lobby"
    cookie_header = f"gateway_token={alice}"
    bob_cookie = f"gateway_token={bob}"

    async def frames(ws: Any, n: int) -> list[dict[str, Any]]:
        return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(n)]

    async def message(ws: Any) -> dict[str, Any]:
        while (frame := (await frames(ws, 1))[0])["type"] != "message":
            pass
        return frame

    async with connect(ws_url, additional_headers={"Cookie": cookie_header}, origin=demo,  # type: ignore[arg-type]
                       subprotocols=["gateway.chat.v1"]) as browser_ws, \
            connect(ws_url, additional_headers={"Cookie": bob_cookie}, origin=demo) as bob_ws:  # type: ignore[arg-type]
        assert (await frames(browser_ws, 1))[0]["user"]["name"] == "alice"
        await browser_ws.send(json.dumps({"type": "message", "text": "hello from alice", "client_id": "a1"}))
        received = await message(bob_ws)
        assert received["text"] == "hello from alice" and received["user"]["name"] == "alice"


@pytest.mark.anyio
async def test_bearer_token_client_chats(demo: str) -> None:
    token = await asyncio.to_thread(provider_access_token, demo, "robot")
    ws_url = demo.replace("http://", "ws://") + "/ws/bots"
    alice = await asyncio.to_thread(sign_in, demo, "alice")
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as bot, \
            connect(ws_url, additional_headers={"Cookie": f"gateway_token={alice}"},
                    origin=demo) as person:  # type: ignore[arg-type]
        welcome = json.loads(await asyncio.wait_for(bot.recv(), 5))
        assert welcome["type"] == "welcome" and welcome["user"]["name"] == "robot"
        await bot.send(json.dumps({"type": "message", "text": "beep"}))
        while (message := json.loads(await asyncio.wait_for(person.recv(), 5)))["type"] != "message":
            pass
        assert message["text"] == "beep" and message["user"]["name"] == "robot"
    async with httpx.AsyncClient() as http:
        refused = await http.get(f"{demo}/auth/session", headers={"Authorization": "Bearer not-a-real-token"})
    assert refused.json()["reason"] == "invalid_token"


def provider_access_token(base: str, user: str) -> str:
    """What a bot's owner does: a code flow at the provider with their own client, PKCE included."""
    import base64
    import hashlib
    import secrets

    discovery_issuer = _issuer(base)
    meta = httpx.get(f"{discovery_issuer}/.well-known/openid-configuration", timeout=10).json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect_uri = "http://127.0.0.1/bot-callback"
    params = {"response_type": "code", "client_id": "bot-client", "redirect_uri": redirect_uri,
              "scope": "openid profile email", "state": "s", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    answer = httpx.post(meta["authorization_endpoint"], params=params, data={"sub": user}, timeout=10)
    code = httpx.URL(answer.headers["location"]).params["code"]
    token = httpx.post(meta["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "client_id": "bot-client", "client_secret": "x", "code_verifier": verifier}, timeout=10)
    access: str = token.json()["access_token"]
    return access


def _issuer(base: str) -> str:
    location = httpx.get(f"{base}/login/demo", follow_redirects=False, timeout=10).headers["location"]
    url = httpx.URL(location)
    return f"{url.scheme}://{url.host}:{url.port}"
