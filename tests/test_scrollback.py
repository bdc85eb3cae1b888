"""`history {before}`: older pages of a room for a client scrolling back, over SQLite and over Redis."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.chat.broker import MemoryBroker
from gateway.chat.frames import FrameError, Older, decode_frame
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits, Member
from gateway.chat.redis_broker import RedisBroker


def frames(member: Member, kind: str) -> list[dict[str, Any]]:
    taken = [json.loads(f) for f in member.outbox.queued()]
    member.outbox.discard_queued()
    return [f for f in taken if f["type"] == kind]


LIMITS = {"history_on_join": 50, "message_rate": 10_000, "message_burst": 10_000, "presence_settle": 0}


@pytest.fixture(params=["sqlite", "redis"])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    if request.param == "sqlite":
        broker: Any = MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3"))
    else:
        redis_url = request.getfixturevalue("redis_url")
        broker = RedisBroker(redis_url, request.getfixturevalue("redis_prefix"))
    hub = Hub(broker, HubLimits(**LIMITS))
    await hub.start()
    yield hub
    await hub.stop()


async def filled(hub: Hub, count: int) -> Member:
    writer = hub.member("r", {"id": "idp:w", "name": "W"})
    await hub.join(writer)
    for i in range(count):
        await hub.post(writer, f"m{i:03d}", None)
    reader = hub.member("r", {"id": "idp:r", "name": "R"})
    await hub.join(reader)
    return reader


@pytest.mark.anyio
async def test_older_pages_go_back_to_the_first_message(hub: Hub) -> None:
    reader = await filled(hub, 120)
    [joined] = frames(reader, "history")
    assert [m["text"] for m in joined["messages"]] == [f"m{i:03d}" for i in range(70, 120)]
    assert joined["truncated"] is True
    texts: list[str] = []
    oldest = joined["messages"][0]["id"]
    pages = []
    while True:
        await hub.older(reader, oldest)
        [page] = frames(reader, "history")
        pages.append((len(page["messages"]), page["truncated"], page["before"] == oldest))
        texts = [m["text"] for m in page["messages"]] + texts
        if not page["truncated"]:
            break
        oldest = page["messages"][0]["id"]
    assert pages == [(50, True, True), (20, False, True)]
    assert texts == [f"m{i:03d}" for i in range(70)]


@pytest.mark.anyio
async def test_an_older_page_is_bounded_in_bytes_keeping_the_newest(tmp_path: Path) -> None:
    hub = Hub(MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3")),
              HubLimits(**LIMITS | {"history_page_bytes": 5700}))
    await hub.start()
    try:
        writer = hub.member("r", {"id": "idp:w", "name": "W"})
        await hub.join(writer)
        for i in range(10):
            await hub.post(writer, f"{i}" * 1000, None)
        await hub.post(writer, "newest", None)  # each older one weighs 1,121 bytes: five fit in 5,700
        newest = (await hub.broker.page("r", None, 1)).messages[0]["id"]
        frames(writer, "history")
        await hub.older(writer, newest)
        [page] = frames(writer, "history")
        assert [m["text"][0] for m in page["messages"]] == ["5", "6", "7", "8", "9"]
        assert page["truncated"] is True
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_older_pages_are_rate_limited_per_socket(tmp_path: Path) -> None:
    hub = Hub(MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3")),
              HubLimits(**LIMITS | {"older_rate": 0.001, "older_burst": 2}))
    await hub.start()
    try:
        reader = await filled(hub, 3)
        frames(reader, "history")
        newer_than_all = f"{int(time.time() * 1000) + 60_000}-0"
        for _ in range(3):
            await hub.older(reader, newer_than_all)
        answers = [json.loads(f) for f in reader.outbox.queued()]
        assert [len(f["messages"]) for f in answers if f["type"] == "history"] == [3, 3]
        [refused] = [f for f in answers if f["type"] == "error"]
        assert refused["code"] == "rate_limited" and refused["retry_after"] >= 1
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_a_malformed_before_is_bad_frame_and_nothing_is_read(hub: Hub) -> None:
    reader = await filled(hub, 2)
    frames(reader, "history")
    await hub.older(reader, "not-an-id")
    assert frames(reader, "error")[0]["code"] == "bad_frame"


@pytest.mark.parametrize("text", ['{"type":"history"}', '{"type":"history","before":""}',
                                  '{"type":"history","before":5}', '{"type":"history","before":["1-0"]}'])
def test_history_frames_without_a_before_are_refused(text: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text)
    assert info.value.code == "bad_frame" and info.value.close_code is None


def test_history_frame_decodes() -> None:
    assert decode_frame('{"type":"history","before":"1700000000000-3"}') == Older("1700000000000-3")
