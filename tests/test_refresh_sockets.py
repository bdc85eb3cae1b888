"""Refresh without a reconnect: after POST /auth/refresh the open sockets of that sign-in take the new
token and expiry (a `session` frame tells the page) and stay open; without a refresh they still close with
4401 when the token expires. On a real uvicorn gateway."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import FakeIdP
from tests.test_logout import issue_refresh_tokens
from tests.test_provider_logout import (  # noqa: F401 - fixtures
    Browser,
    Start,
    browsers_closed_fixture,
    closed_with,
    start_fixture,
)

pytestmark = pytest.mark.anyio
TOKEN_LIFE = 3


async def frame_of(ws: ClientConnection, kind: str, texts: list[str], within: float = 5) -> dict[str, object]:
    """The next `kind` frame; the texts of the messages before it go to `texts`."""
    async with asyncio.timeout(within):
        while True:
            frame: dict[str, object] = json.loads(await ws.recv())
            if frame["type"] == "message":
                texts.append(str(frame["text"]))
            if frame["type"] == kind:
                return frame


async def test_sockets_of_the_sign_in_take_the_refreshed_token_and_stay_open(start: Start, idp: FakeIdP) -> None:
    issue_refresh_tokens(idp)
    idp.expires_in = TOKEN_LIFE
    with start() as base:
        alice = await Browser(base, idp).sign_in("alice", "s1")
        other = await Browser(base, idp).sign_in("alice", "s2")  # the same user, another sign-in
        bob = idp.issue_token("bob")
        async with alice.socket() as ws, other.socket() as untouched, \
                connect(base.replace("http://", "ws://") + "/ws/lobby",
                        additional_headers={"Authorization": f"Bearer {bob}"}) as sender:
            texts: list[str] = []
            ended = asyncio.create_task(closed_with(untouched, within=TOKEN_LIFE + 2))
            for round_ in range(6):  # three times the token's life
                await asyncio.sleep(TOKEN_LIFE / 2)
                assert await alice.refresh() == 204
                frame = await frame_of(ws, "session", texts)
                assert isinstance(frame["expires_at"], float) and frame["expires_at"] > time.time()
                await sender.send(json.dumps({"type": "message", "text": f"m{round_}", "client_id": f"c{round_}"}))
            code, frames = await ended  # not refreshed: ends at its token's expiry, as before
            assert code == 4401 and frames[-1]["code"] == "token_expired"
            await sender.send(json.dumps({"type": "message", "text": "last", "client_id": "c9"}))
            await ws.send(json.dumps({"type": "ping"}))
            await frame_of(ws, "pong", texts)  # still open, three token lives on
            async with asyncio.timeout(5):
                while "last" not in texts:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "message":
                        texts.append(str(frame["text"]))
            assert texts == [*(f"m{i}" for i in range(6)), "last"]  # every message once, none missed


async def test_a_refresh_of_another_sign_in_does_not_reach_this_socket(start: Start, idp: FakeIdP) -> None:
    issue_refresh_tokens(idp)
    idp.expires_in = TOKEN_LIFE
    with start() as base:
        alice, other = [await Browser(base, idp).sign_in("alice", sid) for sid in ("s1", "s2")]
        async with alice.socket() as ws:
            await asyncio.sleep(0.5)
            assert await other.refresh() == 204
            code, frames = await closed_with(ws, within=TOKEN_LIFE + 2)
            assert code == 4401 and "session" not in [f["type"] for f in frames]
