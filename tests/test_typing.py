"""`typing`: passed on to the room, across instances over Redis, throttled, never stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.chat.broker import MemoryBroker
from gateway.chat.frames import Typing, decode_frame
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits
from tests.test_edits import LIMITS, eventually, of_type, two_instances, user


@pytest.mark.anyio
async def test_typing_reaches_the_room_once_per_throttle_and_is_not_stored(tmp_path: Path) -> None:
    hub = Hub(MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3")), HubLimits(**LIMITS | {"typing_rate": 0.001}))
    await hub.start()
    try:
        ann, bob, elsewhere = hub.member("r", user("ann")), hub.member("r", user("bob")), hub.member("s", user("cy"))
        for member in (ann, bob, elsewhere):
            await hub.join(member)
            of_type(member, "history")
        for _ in range(5):
            await hub.typing(ann)  # past the 3 at once: dropped
        assert [f["user"]["id"] for f in of_type(bob, "typing")] == ["idp:ann"] * 3
        assert of_type(elsewhere, "typing") == []
        assert (await hub.broker.page("r", None, 10)).messages == []
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_typing_crosses_instances(redis_url: str, redis_prefix: str) -> None:
    async with two_instances(redis_url, redis_prefix) as (hubs, ann, bob):
        await asyncio.sleep(0.05)
        await hubs[0].typing(ann)
        [typing] = await eventually(bob, "typing")
        assert typing == {"type": "typing", "room": "r", "user": user("ann")}
        assert (await hubs[1].broker.page("r", None, 10)).messages == []


def test_typing_frame() -> None:
    assert decode_frame('{"type":"typing"}') == Typing()


def test_unknown_frames_name_the_ones_there_are() -> None:
    from gateway.chat.frames import FrameError

    with pytest.raises(FrameError) as info:
        decode_frame('{"type":"tpying"}')
    assert "typing" in info.value.message and info.value.code == "bad_frame"


