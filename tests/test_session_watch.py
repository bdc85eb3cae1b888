"""Live sockets and session lifetime: re-checks, 4401 at expiry or revocation, provider trouble keeps the
socket, POST /auth/refresh, GATEWAY_SESSION_MAX_AGE."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from gateway.chat.watch import NOT_ALLOWED, TOKEN_EXPIRED, SessionEnd, SessionWatch
from gateway.errors import Forbidden, InvalidToken, ProviderUnavailable
from gateway.tokens import Principal
from tests.conftest import PAGE_REFRESH, FakeIdP, SettingsFactory, SignIn
from tests.live import free_port, live_server


class FakeTime:
    """A clock and a timer that fires at once, only advancing the clock: the watch runs in no real time."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def timer(self, seconds: float, callback: Callable[[], None]) -> asyncio.Handle:
        self.sleeps.append(seconds)
        self.now += seconds
        return asyncio.get_running_loop().call_soon(callback)


async def watch_session(principal: Principal, recheck: Callable[[], Awaitable[Principal]],
                        next_check: Callable[[Principal], float], fake: FakeTime,
                        on_trouble: Callable[[], None] = lambda: None) -> SessionEnd:
    ended: asyncio.Future[SessionEnd] = asyncio.get_running_loop().create_future()
    watch = SessionWatch(principal, recheck, next_check, ended.set_result, on_trouble, fake.clock, fake.timer)
    watch.start()
    try:
        return await asyncio.wait_for(ended, 5)
    finally:
        watch.cancel()


PRINCIPAL = Principal(subject="a", name="A", provider="idp", expires_at=1_100.0)


@pytest.mark.anyio
async def test_watch_rechecks_when_the_cached_answer_lapses_and_ends_on_invalid() -> None:
    fake = FakeTime()
    answers: list[Any] = [PRINCIPAL, PRINCIPAL, InvalidToken("revoked")]

    async def recheck() -> Principal:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    end = await watch_session(PRINCIPAL, recheck, lambda p: fake.now + 60, fake)
    assert end.close_code == TOKEN_EXPIRED == 4401 and end.error == "token_expired"
    assert fake.sleeps == [60, 60, 60]


@pytest.mark.anyio
async def test_watch_sleeps_until_the_session_ends() -> None:
    fake = FakeTime()

    async def recheck() -> Principal:
        raise InvalidToken("the session has expired")

    await watch_session(PRINCIPAL, recheck, lambda p: p.expires_at or 0, fake)
    assert fake.sleeps == [100.0]


@pytest.mark.anyio
async def test_provider_trouble_keeps_the_socket_and_backs_off() -> None:
    fake = FakeTime()
    troubles = []
    answers: list[Any] = [ProviderUnavailable("down"), ProviderUnavailable("down"), ProviderUnavailable("down"),
                          PRINCIPAL, Forbidden("no longer in the group")]

    async def recheck() -> Principal:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    end = await watch_session(PRINCIPAL, recheck, lambda p: fake.now + 60, fake, on_trouble=lambda: troubles.append(1))
    assert end.close_code == NOT_ALLOWED
    assert fake.sleeps == [60, 1.0, 2.0, 5.0, 60]  # backoff while the provider is down, then normal again
    assert troubles == [1]  # told once, not at every retry


@pytest.fixture
def short_lived(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[str]:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", validation_cache_ttl=0.5,
                             invalid_cache_ttl=0)
    with live_server(create_app(settings), port) as address:
        yield address


async def recv_until_closed(ws: Any, seconds: float) -> list[dict[str, Any]]:
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    return frames


@pytest.mark.anyio
async def test_revoked_token_closes_the_open_socket_with_4401(short_lived: str, idp: FakeIdP) -> None:
    token = idp.issue_token("ivy")
    async with connect(f"ws://{short_lived}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        del idp.tokens[token]  # revoked at the provider
        started = time.monotonic()
        frames = await recv_until_closed(ws, 5)
        assert ws.close_code == 4401
        assert frames[-1]["type"] == "error" and frames[-1]["code"] == "token_expired"
        assert time.monotonic() - started < 3


@pytest.mark.anyio
async def test_socket_closes_at_the_tokens_expiry(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    idp.expires_in = 2
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}")  # cache TTL 60 s: expiry decides
    with live_server(create_app(settings), port) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as browser:
            start = await browser.get("/login/idp")
            await browser.get(idp.authorize(start.headers["location"], "jules"))
            cookie = f"gateway_token={browser.cookies['gateway_token']}"
        async with connect(f"ws://{address}/ws/lobby", additional_headers={"Cookie": cookie},
                           origin=f"http://{address}") as ws:  # type: ignore[arg-type]
            started = time.monotonic()
            await recv_until_closed(ws, 5)
            assert ws.close_code == 4401
            assert 0.5 < time.monotonic() - started < 4


@pytest.mark.anyio
async def test_provider_trouble_during_a_recheck_keeps_the_socket_open(short_lived: str, idp: FakeIdP) -> None:
    token = idp.issue_token("kim")
    async with connect(f"ws://{short_lived}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        idp.mock.routes["userinfo"].mock(return_value=httpx.Response(503))
        while (notice := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "error":
            pass
        assert notice == {"type": "error", "code": "provider_unavailable",
                          "message": "the sign-in provider is unreachable; still connected"}
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}


def test_refresh_gives_a_new_access_token(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    original = idp._token
    valid = ["r-1"]  # the provider rotates refresh tokens: each works once

    def with_refresh(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in valid:
                return httpx.Response(400, json={"error": "invalid_grant"})
            valid[:] = [f"r-{int(form['refresh_token'][2:]) + 1}"]
            return httpx.Response(200, json={"access_token": idp.issue_token("alice"), "token_type": "Bearer",
                                             "expires_in": 3600, "refresh_token": valid[0]})
        answer = original(request)
        body = answer.json()
        return httpx.Response(answer.status_code, json={**body, "refresh_token": "r-1"} if "access_token" in body
                              else body)

    idp.mock.routes["token"].mock(side_effect=with_refresh)
    signed_in = sign_in(client)
    refresh_cookie = next(h for h in signed_in.headers.get_list("set-cookie") if h.startswith("gateway_refresh="))
    assert "Path=/auth/refresh" in refresh_cookie and "HttpOnly" in refresh_cookie
    assert "r-1" not in refresh_cookie  # sealed
    old_token_cookie = client.cookies["gateway_token"]
    answer = client.post("/auth/refresh", headers=PAGE_REFRESH)
    assert answer.status_code == 204
    assert client.cookies["gateway_token"] != old_token_cookie
    assert client.get("/auth/session").json()["authenticated"] is True
    # The rotated refresh token was kept: refreshing again works, and the old one would not.
    assert client.post("/auth/refresh", headers=PAGE_REFRESH).status_code == 204


def test_refresh_refused_by_the_provider_is_401_and_clears_cookies(client: TestClient, sign_in: SignIn,
                                                                    idp: FakeIdP) -> None:
    original = idp._token

    def token(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("grant_type") == "refresh_token":
            return httpx.Response(400, json={"error": "invalid_grant"})
        answer = original(request)
        return httpx.Response(200, json={**answer.json(), "refresh_token": "r-1"})

    idp.mock.routes["token"].mock(side_effect=token)
    sign_in(client)
    answer = client.post("/auth/refresh", headers=PAGE_REFRESH)
    assert answer.status_code == 401
    assert any(h.startswith('gateway_token=""') for h in answer.headers.get_list("set-cookie"))


def test_refresh_with_the_provider_down_is_503(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    original = idp._token

    def token(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("grant_type") == "refresh_token":
            raise httpx.ConnectError("down")
        return httpx.Response(200, json={**original(request).json(), "refresh_token": "r-1"})

    idp.mock.routes["token"].mock(side_effect=token)
    sign_in(client)
    answer = client.post("/auth/refresh", headers=PAGE_REFRESH)
    assert answer.status_code == 503 and answer.headers["retry-after"]


def test_refresh_without_a_refresh_cookie_is_401(client: TestClient) -> None:
    assert client.post("/auth/refresh", headers=PAGE_REFRESH).status_code == 401


def test_session_max_age_bounds_even_tokens_that_never_expire(idp: FakeIdP, make_settings: SettingsFactory,
                                                               sign_in: SignIn) -> None:
    from gateway.cookies import TokenCookie, TokenSession
    from gateway.sealing import Sealer
    from tests.conftest import SECRET

    settings = make_settings(session_max_age=60)
    with TestClient(create_app(settings), base_url="http://gateway.test", follow_redirects=False) as test_client:
        answer = sign_in(test_client)
        token_cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("gateway_token="))
        assert "Max-Age=60" in token_cookie or "Max-Age=59" in token_cookie
        assert test_client.get("/chat").status_code == 200
        # The same valid token (no expiry, like GitHub's), but signed in 61 s ago: the server refuses it
        # even if a browser kept the cookie past its Max-Age.
        cookie = TokenCookie(Sealer([SECRET], "token cookie"), https=False, max_age=60)
        token = next(iter(idp.tokens))
        stale, _ = cookie.seal(TokenSession("idp", token, None, time.time() - 61))
        fresh, _ = cookie.seal(TokenSession("idp", token, None, time.time() - 30))
        test_client.cookies.delete("gateway_token")  # one cookie of that name, as in a browser
        test_client.cookies.set("gateway_token", fresh)
        assert test_client.get("/chat").status_code == 200
        test_client.cookies.delete("gateway_token")
        test_client.cookies.set("gateway_token", stale)
        assert test_client.get("/chat").status_code == 303
