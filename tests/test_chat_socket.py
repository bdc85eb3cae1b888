"""WS /ws/{room} against a real uvicorn: refusals before accept as HTTP responses (docs/sessions.md), then the
frames and close codes of docs/protocol.md."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server


@pytest.fixture
def server(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}",
                             allowed_origins=["http://app.allowed.test"])
    with live_server(create_app(settings), port) as address:
        yield address, settings


@pytest.fixture
def address(server: tuple[str, Settings]) -> str:
    return server[0]


def origin(address: str) -> str:
    return f"http://{address}"


async def refused(url: str, **kwargs: Any) -> httpx.Response:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **kwargs):
            pass
    response = info.value.response
    return httpx.Response(response.status_code, headers=list(response.headers.raw_items()))


@pytest.fixture
async def cookie(address: str, idp: FakeIdP) -> AsyncIterator[str]:
    """A signed-in browser's token cookie, obtained through the real sign-in flow on the live server."""
    async with httpx.AsyncClient(base_url=f"http://{address}", follow_redirects=False) as browser:
        start = await browser.get("/login/idp")
        done = await browser.get(idp.authorize(start.headers["location"], "carol"))
        assert done.status_code == 303
        yield f"gateway_token={browser.cookies['gateway_token']}"


async def frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(count)]


async def joined(ws: ClientConnection) -> dict[str, Any]:
    welcome, history, presence = await frames(ws, 3)
    assert (welcome["type"], history["type"], presence["type"]) == ("welcome", "history", "presence")
    return welcome


PRESENCE_EVENTS = {"join", "leave", "presence"}


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a presence change (those interleave with everything)."""
    while True:
        frame = (await frames(ws, 1))[0]
        if frame["type"] not in PRESENCE_EVENTS:
            return frame


@pytest.mark.anyio
async def test_no_credentials_is_401_with_challenge(address: str) -> None:
    response = await refused(f"ws://{address}/ws/lobby")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Basic dXNlcjpwYXNz", "Token abc",
                                    "Bearer abc\u00e9", "Bearer a=b"])
async def test_malformed_authorization_is_400(address: str, cookie: str, header: str) -> None:
    # A cookie is sent too: a malformed header must not fall back to it.
    response = await refused(f"ws://{address}/ws/lobby",
                             additional_headers={"Authorization": header, "Cookie": cookie},
                             origin=origin(address))  # type: ignore[arg-type]
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]


@pytest.mark.anyio
async def test_nine_kilobyte_header_gets_a_clean_answer(address: str) -> None:
    # Over websockets' 8 KiB header-line limit: uvicorn used to build a 431 and never send it.
    response = await refused(f"ws://{address}/ws/lobby",
                             additional_headers={"Authorization": "Bearer " + "a" * 9 * 1024})
    assert response.status_code == 431  # "Request Header Fields Too Large", written and closed
    async with httpx.AsyncClient() as http:  # the server is still up
        assert (await http.get(f"http://{address}/healthz")).status_code == 200


@pytest.mark.anyio
async def test_unknown_token_is_401_invalid_token(address: str) -> None:
    response = await refused(f"ws://{address}/ws/lobby", additional_headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.anyio
@pytest.mark.parametrize("trouble", [httpx.Response(500), httpx.Response(429, headers={"Retry-After": "7"}),
                                     httpx.ConnectTimeout("slow"), httpx.ConnectError("down")])
async def test_provider_trouble_is_503_with_retry_after(address: str, idp: FakeIdP, trouble: Any) -> None:
    token = idp.issue_token("dave")
    route = idp.mock.routes["userinfo"]
    if isinstance(trouble, httpx.Response):
        route.mock(return_value=trouble)
    else:
        route.mock(side_effect=trouble)
    response = await refused(f"ws://{address}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.anyio
async def test_cookie_without_origin_is_403(address: str, cookie: str) -> None:
    response = await refused(f"ws://{address}/ws/lobby", additional_headers={"Cookie": cookie})
    assert response.status_code == 403


@pytest.mark.anyio
@pytest.mark.parametrize("bad", ["http://evil.test", "null", "http://127.0.0.1.evil.net",
                                 "https://127.0.0.1", "http://app.allowed.test.evil.net"])
async def test_cookie_with_foreign_origin_is_403(address: str, cookie: str, bad: str) -> None:
    response = await refused(f"ws://{address}/ws/lobby", additional_headers={"Cookie": cookie},
                             origin=bad)  # type: ignore[arg-type]
    assert response.status_code == 403


@pytest.mark.anyio
async def test_header_token_with_foreign_origin_is_403(address: str, idp: FakeIdP) -> None:
    token = idp.issue_token("erin")
    response = await refused(f"ws://{address}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"},
                             origin="http://evil.test")  # type: ignore[arg-type]
    assert response.status_code == 403


@pytest.mark.anyio
@pytest.mark.parametrize("room", ["a" * 65, "bad.room", "sp%20ace", "%2E%2E"])
async def test_bad_room_name_is_400_before_auth(address: str, room: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://{address}/ws/{room}", open_timeout=5):
            pass
    assert info.value.response.status_code in (400, 403)  # 403: names uvicorn decodes into no route


@pytest.mark.anyio
async def test_cookie_and_header_users_chat(address: str, cookie: str, idp: FakeIdP) -> None:
    bot_token = idp.issue_token("robot", name="Robot")
    async with connect(f"ws://{address}/ws/room-1", additional_headers={"Cookie": cookie},
                       origin=origin(address), subprotocols=["gateway.chat.v1"]) as browser, \
            connect(f"ws://{address}/ws/room-1",
                    additional_headers={"Authorization": f"Bearer {bot_token}"}) as bot:
        assert browser.subprotocol == "gateway.chat.v1"
        assert bot.subprotocol is None
        welcome = await joined(browser)
        assert welcome["user"]["name"] == "Carol" and welcome["room"] == "room-1"
        assert isinstance(welcome["server_time"], int)
        await joined(bot)
        await bot.send(json.dumps({"type": "message", "text": "beep", "client_id": "c1"}))
        on_bot = [await next_frame(bot), await next_frame(bot)]
        assert [f["type"] for f in on_bot] == ["message", "ack"]  # stored and fanned out, then acked
        message = await next_frame(browser)
        assert message["text"] == "beep" and message["user"]["name"] == "Robot"
        assert on_bot[1] == {"type": "ack", "client_id": "c1", "id": message["id"]}


@pytest.mark.anyio
async def test_k8s_subprotocol_token_is_accepted_and_not_echoed(address: str, idp: FakeIdP) -> None:
    import base64

    token = idp.issue_token("frank")
    entry = "base64url.bearer.authorization.k8s.io." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    async with connect(f"ws://{address}/ws/lobby", subprotocols=[entry, "gateway.chat.v1"],  # type: ignore[list-item]
                       origin="http://app.allowed.test") as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "gateway.chat.v1"
        assert (await joined(ws))["user"]["name"] == "Frank"


@pytest.mark.anyio
async def test_ping_gets_pong_and_bad_frames_get_errors(address: str, idp: FakeIdP) -> None:
    token = idp.issue_token("gina")
    async with connect(f"ws://{address}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await joined(ws)
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}
        for bad in ([1, 2], {"type": "nope"}, {"type": "message"}, {"type": "message", "text": "  "},
                    {"type": "message", "text": "x", "client_id": 5}, {"type": "resume", "after": "x-1"}):
            await ws.send(json.dumps(bad))
            error = await next_frame(ws)
            assert error["type"] == "error" and error["code"] == "bad_frame", bad


@pytest.mark.anyio
@pytest.mark.parametrize(("payload", "code"), [(b"\x00\x01", 1003), ("not json", 1007), ("x" * 5000, 1009)])
async def test_protocol_violations_close_with_their_code(address: str, idp: FakeIdP, payload: Any,
                                                          code: int) -> None:
    token = idp.issue_token("hank")
    async with connect(f"ws://{address}/ws/lobby", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await joined(ws)
        await ws.send(payload)
        with pytest.raises(ConnectionClosed):
            while True:
                await next_frame(ws)
        assert ws.close_code == code
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://{address}/healthz")).status_code == 200


@pytest.mark.anyio
async def test_refused_handshakes_log_no_errors(address: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            await refused(f"ws://{address}/ws/lobby")
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("after", ["x", "1-", "-1", "1-2-3", "99999999999999999999999-0"])
async def test_a_malformed_resume_point_is_400_before_accept(address: str, idp: FakeIdP, after: str) -> None:
    token = idp.issue_token("resumer")
    response = await refused(f"ws://{address}/ws/lobby?after={after}",
                             additional_headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["", "full", "Changes", "changes%0A", "changes,changes"])
async def test_an_unknown_presence_form_is_400_before_accept(address: str, idp: FakeIdP, value: str) -> None:
    token = idp.issue_token("presence-form")
    response = await refused(f"ws://{address}/ws/lobby?presence={value}",
                             additional_headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
