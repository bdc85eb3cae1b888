"""Sessions the provider ends, against panva's oidc-provider with its backchannelLogout feature: ending the
user's session there closes that sign-in's sockets on two gateway instances (sharing Redis) within a second
and refuses its cookie; a refresh every few seconds keeps a socket open across 5-second access tokens; a
sign-out everywhere ends three sign-ins of the user and leaves the one at another provider."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from gateway.app import create_app
from tests.conftest import SettingsFactory
from tests.interop.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    DIRECT_REDIRECT_URI,
    PROVIDER_NAME,
    FormParser,
    ProviderPool,
    authorize,
    frames_until_closed,
    origin,
    pong,
    welcome,
    ws_url,
)
from tests.live import free_port, live_server

pytestmark = pytest.mark.anyio
OTHER = "other"  # a second provider (another oidc-provider process) for the sign-out everywhere test


@contextmanager
def instances(make_settings: SettingsFactory, gateway_port: int, providers: dict[str, dict[str, Any]],
              count: int, **overrides: Any) -> Iterator[list[str]]:
    """`count` live gateways of one deployment (one public URL, one Redis when overrides name it); the first
    listens on the port registered at the provider. Yields their base URLs."""
    public = f"http://127.0.0.1:{gateway_port}"
    settings = make_settings(public_url=public, providers=providers, **overrides)
    ports = [gateway_port, *(free_port() for _ in range(count - 1))]
    with contextmanager_stack([live_server(create_app(settings), port) for port in ports]) as addresses:
        yield [f"http://{address}" for address in addresses]


@contextmanager
def contextmanager_stack(managers: list[Any]) -> Iterator[list[Any]]:
    if not managers:
        yield []
        return
    with managers[0] as first, contextmanager_stack(managers[1:]) as rest:
        yield [first, *rest]


def panva(issuer: str) -> dict[str, Any]:
    return {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def browser_signed_in(base: str, user: str, provider: str = PROVIDER_NAME) -> httpx.Client:
    """A browser's jar after signing in through the gateway: the gateway's cookies and the provider's
    session cookie, as a browser keeps them (cookies ignore ports). The caller closes it."""
    browser = httpx.Client(follow_redirects=False, timeout=10)
    start = browser.get(f"{base}/login/{provider}", params={"next": "/chat"})
    assert start.status_code == 302, start.text
    callback = authorize(browser, start.headers["location"], user)
    assert origin(str(callback)) == base and "code" in callback.params, callback
    done = browser.get(str(callback))
    assert done.status_code == 303, f"callback answered {done.status_code}: {done.text[:500]}"
    return browser


def gateway_cookies(browser: httpx.Client) -> str:
    """The Cookie header a browser sends the chat socket: the gateway's cookies for Path=/."""
    return "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar if c.path == "/" and
                     c.name.startswith("gateway_"))


@asynccontextmanager
async def chat_socket(base: str, public: str, browser: httpx.Client) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(base), additional_headers={"Cookie": gateway_cookies(browser)},
                       origin=Origin(public), open_timeout=5) as ws:
        await welcome(ws)
        yield ws


async def socket_refused(base: str, public: str, browser: httpx.Client) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(ws_url(base), additional_headers={"Cookie": gateway_cookies(browser)},
                           origin=Origin(public), open_timeout=5):
            pass
    return info.value.response.status_code


def end_session_at_provider(browser: httpx.Client, issuer: str) -> httpx.Response:
    """What an administrator's "sign out" or the user's logout at the provider does: GET /session/end, then
    confirm it (xsrf, logout=yes). oidc-provider posts the logout tokens before it answers."""
    page = browser.get(f"{issuer}/session/end")
    assert page.status_code == 200, page.text[:500]
    parser = FormParser()
    parser.feed(page.text)
    form = next(f for f in parser.forms if "xsrf" in f.fields)
    return browser.post(urljoin(str(page.url), form.action), data={**form.fields, "logout": "yes"})


async def test_ending_the_session_at_the_provider_closes_its_sockets_on_every_instance_within_a_second(
        issuer: str, gateway_port: int, make_settings: SettingsFactory, redis_url: str, redis_prefix: str) -> None:
    with instances(make_settings, gateway_port, {PROVIDER_NAME: panva(issuer)}, 2, broker_url=redis_url,
                   redis_prefix=redis_prefix) as (a, b):
        discovery = (await asyncio.to_thread(httpx.get, f"{issuer}/.well-known/openid-configuration")).json()
        assert discovery["backchannel_logout_supported"] is True
        alice, bob = browser_signed_in(a, "alice"), browser_signed_in(a, "bob")
        try:
            async with chat_socket(a, a, alice) as alice_a, chat_socket(b, a, alice) as alice_b, \
                    chat_socket(a, a, bob) as bob_a, chat_socket(b, a, bob) as bob_b:
                closing = [asyncio.create_task(frames_until_closed(ws, 30)) for ws in (alice_a, alice_b)]
                ended = await asyncio.to_thread(end_session_at_provider, alice, issuer)
                assert ended.is_success or ended.is_redirect, ended.text[:500]
                answered = time.monotonic()
                frames = await asyncio.wait_for(asyncio.gather(*closing), 1.0)
                assert time.monotonic() - answered < 1.0
                for ws, seen in zip((alice_a, alice_b), frames, strict=True):
                    assert ws.close_code == 4401 and seen[-1]["code"] == "token_expired"
                await pong(bob_a)
                await pong(bob_b)
            for base in (a, b):
                assert await socket_refused(base, a, alice) == 401
                page = alice.get(f"{base}/chat")
                assert page.status_code == 303 and page.headers["location"].startswith("/login")
                assert alice.get(f"{base}/auth/session").json()["authenticated"] is False
                assert bob.get(f"{base}/auth/session").json()["authenticated"] is True
        finally:
            alice.close()
            bob.close()


async def test_a_socket_stays_open_for_30_s_across_refreshes_of_5_second_tokens(
        provider_pool: ProviderPool, gateway_port: int, make_settings: SettingsFactory) -> None:
    short = provider_pool.issuer(PROVIDER_ACCESS_TOKEN_TTL="5")
    with instances(make_settings, gateway_port, {PROVIDER_NAME: panva(short)}, 1) as (base,):
        alice = browser_signed_in(base, "alice")
        try:
            async with chat_socket(base, base, alice) as ws:
                received: list[str] = []
                sessions = 0
                deadline = time.monotonic() + 30
                next_refresh = time.monotonic() + 2.5
                sent = 0
                while time.monotonic() < deadline:
                    if time.monotonic() >= next_refresh:
                        answer = await asyncio.to_thread(
                            alice.post, f"{base}/auth/refresh", headers={"Origin": base, "X-Gateway-Refresh": "1"})
                        assert answer.status_code == 204, answer.text
                        next_refresh += 2.5
                    await ws.send(json.dumps({"type": "message", "text": f"m{sent}", "client_id": f"c{sent}"}))
                    sent += 1
                    try:
                        async with asyncio.timeout(0.5):
                            while True:
                                frame = json.loads(await ws.recv())
                                if frame["type"] == "message":
                                    received.append(frame["text"])
                                elif frame["type"] == "session":
                                    sessions += 1
                    except TimeoutError:
                        pass
                await pong(ws)
                async with asyncio.timeout(5):
                    while len(received) < sent:
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "message":
                            received.append(frame["text"])
            assert received == [f"m{i}" for i in range(sent)]  # each once, in order, none missed
            assert sessions >= 10  # a refresh every 2.5 s reached the socket each time
        finally:
            alice.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no logout form on the page"
    return found.group(1)


async def test_sign_out_everywhere_ends_three_sign_ins_and_leaves_the_other_provider(
        provider_pool: ProviderPool, issuer: str, gateway_port: int, make_settings: SettingsFactory,
        redis_url: str, redis_prefix: str) -> None:
    public = f"http://127.0.0.1:{gateway_port}"
    other = provider_pool.issuer(PROVIDER_REDIRECT_URIS=f"{public}/auth/{OTHER}/callback,{DIRECT_REDIRECT_URI}",
                                 PROVIDER_BACKCHANNEL_LOGOUT_URI=f"{public}/auth/{OTHER}/backchannel-logout")
    providers = {PROVIDER_NAME: panva(issuer), OTHER: panva(other)}
    with instances(make_settings, gateway_port, providers, 2, broker_url=redis_url,
                   redis_prefix=redis_prefix) as (a, b):
        sign_ins = [browser_signed_in(a, "alice") for _ in range(3)]
        elsewhere = browser_signed_in(a, "alice", OTHER)
        try:
            async with chat_socket(a, a, sign_ins[1]) as on_a, chat_socket(b, a, sign_ins[2]) as on_b, \
                    chat_socket(b, a, elsewhere) as other_provider:
                closing = [asyncio.create_task(frames_until_closed(ws, 30)) for ws in (on_a, on_b)]
                csrf = csrf_of(sign_ins[0].get(f"{a}/chat").text)
                out = await asyncio.to_thread(sign_ins[0].post, f"{a}/logout", data={"csrf": csrf, "everywhere": "1"},
                                              headers={"Origin": public})
                assert out.status_code in (200, 303), out.text[:500]
                await asyncio.wait_for(asyncio.gather(*closing), 1.0)
                assert on_a.close_code == 4401 and on_b.close_code == 4401
                await pong(other_provider)
            for browser in sign_ins:
                for base in (a, b):
                    assert browser.get(f"{base}/auth/session").json()["authenticated"] is False
            assert elsewhere.get(f"{b}/auth/session").json()["user"]["provider"] == OTHER
        finally:
            for browser in [*sign_ins, elsewhere]:
                browser.close()
