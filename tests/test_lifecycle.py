"""The socket lifecycle under concurrency, against a real uvicorn: every client close is answered with the
server's close frame, also when many users come and go at once (with the memory broker and with Redis)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server

SESSIONS = 300
AT_ONCE = 30


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return {"broker_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix")}


@pytest.fixture
def address(idp: FakeIdP, make_settings: SettingsFactory, broker: dict[str, str]) -> Iterator[str]:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", max_sockets_per_user=100,
                             failed_auth_burst=1000, **broker)  # 300 new tokens from one address
    with live_server(create_app(settings), port) as address:
        yield address


async def short_session(address: str, token: str) -> tuple[int | None, bool]:
    """Open, read the first frame, close as a typical client library does (websockets: a 16-message read
    queue, 2 s to wait for the server's close frame). (close code, whether the server's close came)."""
    async with connect(f"ws://{address}/ws/storm", additional_headers={"Authorization": f"Bearer {token}"},
                       subprotocols=["gateway.chat.v1"], close_timeout=2, open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
    return ws.close_code, ws.protocol.close_rcvd is not None


@pytest.mark.anyio
async def test_every_client_close_gets_the_servers_close_frame(address: str, idp: FakeIdP) -> None:
    tokens = [idp.issue_token(f"u{i}") for i in range(SESSIONS)]  # distinct users: presence is busy
    queue = list(tokens)
    outcomes: list[tuple[int | None, bool]] = []

    async def worker() -> None:
        while queue:
            outcomes.append(await short_session(address, queue.pop()))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(AT_ONCE))), 120)
    unanswered = [outcome for outcome in outcomes if outcome != (1000, True)]
    assert len(outcomes) == SESSIONS
    assert unanswered == [], f"{len(unanswered)} of {SESSIONS} closes not answered: {unanswered[:5]}"


@pytest.mark.anyio
@pytest.mark.parametrize("query", ["", "?presence=changes"])
async def test_a_join_storm_costs_each_socket_a_few_presence_frames(address: str, idp: FakeIdP, query: str) -> None:
    """60 users join one room at once: each socket sees a handful of presence frames, not 60, and the list
    it ends with is exact, with full lists and with changes."""
    tokens = [idp.issue_token(f"p{i}") for i in range(60)]
    url = f"ws://{address}/ws/crowd{query}"
    sockets = [await connect(url, additional_headers={"Authorization": f"Bearer {t}"},
                             subprotocols=["gateway.chat.v1"]) for t in tokens[:1]]
    sockets += await asyncio.gather(*(
        connect(url, additional_headers={"Authorization": f"Bearer {t}"},
                subprotocols=["gateway.chat.v1"], max_queue=None) for t in tokens[1:]))
    try:
        first = sockets[0]
        people: set[str] = set()
        presence_frames = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while len(people) < 60 and loop.time() < deadline:
            try:
                frame: dict[str, Any] = json.loads(await asyncio.wait_for(first.recv(), 1))
            except TimeoutError:
                continue
            if frame["type"] == "presence":
                presence_frames += 1
                people = {u["id"] for u in frame["users"]}
            elif frame["type"] == "presence_changes":
                presence_frames += 1
                people |= {u["id"] for u in frame["joined"]}
                people -= {u["id"] for u in frame["left"]}
            elif frame["type"] == "join":
                presence_frames += 1
                people.add(frame["user"]["id"])
            elif frame["type"] == "leave":
                presence_frames += 1
                people.discard(frame["user"]["id"])
        assert people == {f"idp:p{i}" for i in range(60)}
        assert presence_frames <= 5, f"{presence_frames} presence frames for one join storm"
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
