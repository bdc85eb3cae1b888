"""Logout the provider starts, and its effects on a real uvicorn gateway: back-channel logout by `sid` and
by `sub` (sockets closed with 4401, cookie and refresh refused, other users untouched), the replay cache
(bounded, shared through Redis), front-channel logout and its framing, and sign-out everywhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any, ClassVar

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from gateway.app import create_app
from gateway.replay import ENTRY_OVERHEAD, ReplayCache
from tests.conftest import ISSUER, PUBLIC_URL, FakeIdP, SettingsFactory, SignIn
from tests.live import free_port, live_server
from tests.logout_tokens import DROP, logout_token
from tests.test_logout import csrf_of, issue_refresh_tokens

pytestmark = pytest.mark.anyio
Start = Callable[..., AbstractContextManager[str]]


@pytest.fixture(name="start")
def start_fixture(idp: FakeIdP, make_settings: SettingsFactory, browsers_closed: None) -> Start:
    """`with start(**settings) as base:` a live gateway whose provider advertises both logout channels."""
    idp.discovery["backchannel_logout_supported"] = True
    idp.discovery["frontchannel_logout_supported"] = True

    @contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        port = free_port()
        settings = make_settings(public_url=f"http://127.0.0.1:{port}", **overrides)
        with live_server(create_app(settings), port):
            yield f"http://127.0.0.1:{port}"

    return run


class Browser:
    """A browser's cookie jar on a live gateway: signs in, opens chat sockets with its cookie."""

    opened: ClassVar[list[Browser]] = []  # closed after each test (the `browsers_closed` fixture)

    def __init__(self, base: str, idp: FakeIdP) -> None:
        self.base = base
        self.idp = idp
        self.http = httpx.AsyncClient(base_url=base, follow_redirects=False)
        Browser.opened.append(self)

    async def sign_in(self, sub: str, sid: str | None) -> Browser:
        self.idp.sid = sid
        start = await self.http.get("/login/idp")
        done = await self.http.get(self.idp.authorize(start.headers["location"], sub))
        assert done.status_code == 303, done.text
        return self

    @property
    def cookie(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())

    @asynccontextmanager
    async def socket(self, base: str | None = None) -> AsyncIterator[ClientConnection]:
        url = (base or self.base).replace("http://", "ws://") + "/ws/lobby"
        async with connect(url, additional_headers={"Cookie": self.cookie}, origin=Origin(self.base),
                           open_timeout=5) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
            yield ws

    async def refused(self) -> int:
        url = self.base.replace("http://", "ws://") + "/ws/lobby"
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, additional_headers={"Cookie": self.cookie}, origin=Origin(self.base),
                               open_timeout=5):
                pass
        return info.value.response.status_code

    async def signed_in(self) -> bool:
        return bool((await self.http.get("/auth/session")).json()["authenticated"])

    async def refresh(self) -> int:
        answer = await self.http.post("/auth/refresh", headers={"Origin": self.base, "X-Gateway-Refresh": "1"})
        return answer.status_code


@pytest.fixture(name="browsers_closed")
async def browsers_closed_fixture() -> AsyncIterator[None]:
    yield
    while Browser.opened:
        await Browser.opened.pop().http.aclose()


async def closed_with(ws: ClientConnection, within: float = 1.0) -> tuple[int | None, list[dict[str, Any]]]:
    """Frames until the server closes the socket, which must happen `within` seconds; the close code."""
    frames = []
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                frames.append(json.loads(await ws.recv()))
    return ws.close_code, frames


async def still_open(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"type": "ping"}))
    async with asyncio.timeout(5):
        while json.loads(await ws.recv())["type"] != "pong":
            pass


async def post_logout_token(base: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as provider:
        return await provider.post("/auth/idp/backchannel-logout", data={"logout_token": token})


async def test_a_logout_by_sid_closes_that_sessions_sockets_and_refuses_its_cookie_and_refresh(
        start: Start, idp: FakeIdP) -> None:
    issue_refresh_tokens(idp)
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "sid-a")
        bob = await Browser(base, idp).sign_in("bob", "sid-b")
        async with alice.socket() as first, alice.socket() as second, bob.socket() as other:
            answer = await post_logout_token(base, logout_token(idp, sid="sid-a"))
            assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
            for ws in (first, second):
                code, frames = await closed_with(ws)
                assert code == 4401 and frames[-1]["code"] == "token_expired"
            await still_open(other)
        assert await alice.refused() == 401
        assert not await alice.signed_in()
        assert await alice.refresh() == 401
        assert (await alice.http.get("/chat")).headers["location"].startswith("/login")
        assert await bob.signed_in()


async def test_a_logout_by_sub_alone_ends_every_sign_in_of_that_user(start: Start, idp: FakeIdP) -> None:
    with start() as base:
        phone, laptop = [await Browser(base, idp).sign_in("alice", sid) for sid in ("s1", "s2")]
        bob = await Browser(base, idp).sign_in("bob", "s3")
        async with phone.socket() as ws1, laptop.socket() as ws2, bob.socket() as other:
            token = logout_token(idp, sid=DROP, sub="alice")
            assert (await post_logout_token(base, token)).status_code == 200
            assert (await closed_with(ws1))[0] == 4401 and (await closed_with(ws2))[0] == 4401
            await still_open(other)
        assert not await phone.signed_in() and not await laptop.signed_in()
        assert await bob.signed_in()
        again = await Browser(base, idp).sign_in("alice", "s4")  # a sign-in after the logout works
        assert await again.signed_in()


async def test_a_logout_naming_another_sid_changes_nothing(start: Start, idp: FakeIdP) -> None:
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "sid-a")
        assert (await post_logout_token(base, logout_token(idp, sid="sid-zzz"))).status_code == 200
        assert await alice.signed_in()


@pytest.mark.parametrize("advertised, setting, status", [
    (False, "auto", 404), (True, "off", 404), (False, "on", 200), (True, "auto", 200)])
def test_back_channel_logout_is_on_where_advertised_or_set(idp: FakeIdP, make_settings: SettingsFactory,
                                                           advertised: bool, setting: str, status: int) -> None:
    idp.discovery["backchannel_logout_supported"] = advertised
    settings = make_settings(providers={"idp": {"issuer": ISSUER, "client_id": idp.client_id, "client_secret": "s",
                                                "backchannel_logout": setting}})
    with TestClient(create_app(settings), base_url=PUBLIC_URL) as client:
        answer = client.post("/auth/idp/backchannel-logout", data={"logout_token": logout_token(idp)})
    assert answer.status_code == status
    assert answer.headers["cache-control"] == "no-store"


def test_a_replay_reaching_another_instance_is_refused(idp: FakeIdP, make_settings: SettingsFactory, redis_url: str,
                                                       redis_prefix: str, sign_in: SignIn) -> None:
    idp.discovery["backchannel_logout_supported"] = True
    idp.sid = "sid-a"
    settings = make_settings(broker_url=redis_url, redis_prefix=redis_prefix)
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as a, \
            TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as b:
        assert sign_in(a, "alice").status_code == 303
        b.cookies = a.cookies
        assert b.get("/auth/session").json()["authenticated"]
        token = logout_token(idp, sid="sid-a")
        assert a.post("/auth/idp/backchannel-logout", data={"logout_token": token}).status_code == 200
        replay = b.post("/auth/idp/backchannel-logout", data={"logout_token": token})
        assert replay.status_code == 400 and "used before" in replay.json()["error_description"]
        assert not b.get("/auth/session").json()["authenticated"]  # the deny entry reached B


async def test_the_replay_cache_is_bounded_in_entries_and_bytes_and_expires() -> None:
    now = [1000.0]
    cache = ReplayCache(max_entries=3, max_bytes=10_000, clock=lambda: now[0])
    for key in "abcd":
        assert await cache.first_use(key * 64, now[0] + 60)
    assert len(cache) == 3 and not await cache.first_use("d" * 64, now[0] + 60)
    assert await cache.first_use("a" * 64, now[0] + 60)  # the oldest went first
    small = ReplayCache(max_entries=1000, max_bytes=5 * (64 + ENTRY_OVERHEAD))
    for index in range(20):
        await small.first_use(f"{index:064d}", 2e9)
    assert len(small) == 5 and small.bytes <= small.max_bytes
    now[0] += 61
    assert await cache.first_use("d" * 64, now[0] + 60)  # lapsed: its token is too old by now anyway
    assert len(cache) == 1


# --- front-channel logout -----------------------------------------------------------------------------------

def frontchannel(base: str, iss: str = ISSUER, sid: str = "sid-a") -> str:
    return f"/auth/idp/frontchannel-logout?{httpx.QueryParams({'iss': iss, 'sid': sid})}"


async def test_front_channel_with_the_right_iss_and_sid_ends_the_session(start: Start, idp: FakeIdP) -> None:
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "sid-a")
        async with alice.socket() as ws:
            answer = await alice.http.get(frontchannel(base))
            assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
            assert (await closed_with(ws))[0] == 4401
        assert not await alice.signed_in()


@pytest.mark.parametrize("iss, sid, status", [(ISSUER, "sid-other", 200), ("https://evil.test", "sid-a", 400),
                                              (ISSUER, "", 400), (ISSUER, "sid-a\n", 400)])
async def test_front_channel_naming_another_session_or_issuer_changes_nothing(
        start: Start, idp: FakeIdP, iss: str, sid: str, status: int) -> None:
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "sid-a")
        async with alice.socket() as ws:
            assert (await alice.http.get(frontchannel(base, iss, sid))).status_code == status
            await still_open(ws)
        assert await alice.signed_in()


def test_only_the_front_channel_page_may_be_framed_and_only_by_the_provider(client: TestClient, idp: FakeIdP,
                                                                          sign_in: SignIn) -> None:
    idp.discovery["frontchannel_logout_supported"] = True
    client.app.state.gateway.providers.get("idp")._metadata = None  # type: ignore[attr-defined]
    sign_in(client, "alice")
    framed = client.get(frontchannel(PUBLIC_URL, sid="none"))
    assert "frame-ancestors https://idp.test;" in framed.headers["content-security-policy"]
    assert "x-frame-options" not in framed.headers
    for path in ("/chat", "/login", "/auth/session", "/auth/idp/backchannel-logout"):
        page = client.get(path)
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"], path
        assert page.headers["x-frame-options"] == "DENY", path


# --- sign-out everywhere ------------------------------------------------------------------------------------

async def sign_out_everywhere(browser: Browser, origin: str | None = None) -> httpx.Response:
    csrf = csrf_of((await browser.http.get("/chat")).text)
    headers = {"Origin": origin if origin is not None else browser.base}
    return await browser.http.post("/logout", data={"csrf": csrf, "everywhere": "1"}, headers=headers)


async def test_sign_out_everywhere_ends_every_session_of_the_user_at_that_provider(
        start: Start, idp: FakeIdP) -> None:
    with start() as base:
        sessions = [await Browser(base, idp).sign_in("alice", f"s{i}") for i in range(3)]
        bob = await Browser(base, idp).sign_in("bob", "s9")
        async with sessions[1].socket() as ws1, sessions[2].socket() as ws2, bob.socket() as other:
            answer = await sign_out_everywhere(sessions[0])
            assert answer.status_code in (200, 303), answer.text
            assert (await closed_with(ws1))[0] == 4401 and (await closed_with(ws2))[0] == 4401
            await still_open(other)
        for session in sessions:
            assert not await session.signed_in()
        assert await bob.signed_in()


@pytest.mark.parametrize("origin", ["http://evil.test", "null", ""])
async def test_sign_out_everywhere_from_another_origin_is_refused(start: Start, idp: FakeIdP, origin: str) -> None:
    with start() as base:
        alice, other = [await Browser(base, idp).sign_in("alice", sid) for sid in ("s1", "s2")]
        csrf = csrf_of((await alice.http.get("/chat")).text)
        headers = {"Origin": origin} if origin else {}
        answer = await alice.http.post("/logout", data={"csrf": csrf, "everywhere": "1"}, headers=headers)
        assert answer.status_code == 400
        assert await alice.signed_in() and await other.signed_in()


async def test_sign_out_everywhere_without_the_csrf_token_is_refused(start: Start, idp: FakeIdP) -> None:
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "s1")
        answer = await alice.http.post("/logout", data={"everywhere": "1"}, headers={"Origin": base})
        assert answer.status_code == 400 and await alice.signed_in()


# --- check-config -------------------------------------------------------------------------------------------

def test_check_config_prints_the_logout_uris_and_whether_the_provider_advertises_them(
        idp: FakeIdP, make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import _check

    idp.discovery["backchannel_logout_supported"] = True
    settings = make_settings(providers={
        "idp": {"issuer": ISSUER, "client_id": idp.client_id, "client_secret": "s", "frontchannel_logout": "off"},
        "gh": {"preset": "github", "client_id": "c", "client_secret": "s"}})
    assert asyncio.run(_check(settings)) == []
    out = capsys.readouterr().out
    assert (f"back-channel logout URI: {PUBLIC_URL}/auth/idp/backchannel-logout (advertised by the provider; "
            "accepted)") in out
    assert (f"front-channel logout URI: {PUBLIC_URL}/auth/idp/frontchannel-logout (not advertised by the provider; "
            "not accepted (GATEWAY_PROVIDERS__IDP__FRONTCHANNEL_LOGOUT=off))") in out
    assert "logout: none" in out.split("provider gh:")[1]
