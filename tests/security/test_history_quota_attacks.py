"""History exhaustion: one user at the default rate limits starting a new room per message (about 1 to 1.7 GiB a
day before the limits). Rooms per user per day, rooms in total and bytes in total are capped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.conftest import FakeIdP
from tests.security.conftest import StartGateway


async def post(url: str, token: str, text: str) -> dict[str, Any]:
    """Post to a room and return the answer: its ack, or the error."""
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(json.dumps({"type": "message", "text": text, "client_id": f"{url}-{text}"}))
        async with asyncio.timeout(5):
            while True:
                frame: dict[str, Any] = json.loads(await ws.recv())
                if frame["type"] in ("ack", "error"):
                    return frame


@pytest.mark.anyio
@pytest.mark.parametrize("broker", ["memory", "redis"])
async def test_one_user_starting_room_after_room_is_stopped(start_gateway: StartGateway, idp: FakeIdP,
                                                            broker: str, request: pytest.FixtureRequest) -> None:
    extra: dict[str, Any] = {}
    if broker == "redis":
        extra = {"broker_url": request.getfixturevalue("redis_url"),
                 "redis_prefix": request.getfixturevalue("redis_prefix")}
    with start_gateway(history_rooms_per_user=3, **extra) as live:
        mallory = idp.issue_token("mallory")
        answers = [await post(live.ws(f"spam-{i}"), mallory, "x") for i in range(5)]
        assert [a["type"] for a in answers] == ["ack", "ack", "ack", "error", "error"]
        assert answers[3]["code"] == "history_full" and "post in a room that exists" in answers[3]["message"]
        assert (await post(live.ws("spam-0"), mallory, "still fine here"))["type"] == "ack"
        assert (await post(live.ws("spam-4"), idp.issue_token("bob"), "hello"))["type"] == "ack"
