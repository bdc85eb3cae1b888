"""The embedded store's history limits (gateway/chat/quota.py): rooms per user per day, rooms, bytes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.chat.history import SqliteHistory
from gateway.chat.quota import DAY_MS, HistoryFull, HistoryQuota


def user(name: str) -> dict[str, str]:
    return {"id": f"idp:{name}", "name": name.title()}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_a_resend_is_never_refused_by_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    history = SqliteHistory(path, quota=HistoryQuota(rooms_per_user=1))
    await history.open()
    first = await history.append("r1", user("a"), "hello", "c1")
    with pytest.raises(HistoryFull, match="you started 1 rooms"):
        await history.append("r2", user("a"), "more", "c2")
    again = await history.append("r1", user("a"), "hello", "c1")
    assert again.duplicate and again.message == first.message
    full_at = history.ledger.bytes
    await history.close()

    # The whole history full as well: the resend still gets its first copy, even aimed at a new room.
    full = SqliteHistory(path, quota=HistoryQuota(max_rooms=1, rooms_per_user=1, max_bytes=full_at))
    await full.open()
    try:
        for room in ("r1", "r2"):
            resent = await full.append(room, user("a"), "hello", "c1")
            assert resent.duplicate and resent.message["id"] == first.message["id"]
        with pytest.raises(HistoryFull, match="GATEWAY_HISTORY_MAX_BYTES"):
            await full.append("r1", user("a"), "new", "c3")
    finally:
        await full.close()


@pytest.mark.anyio
async def test_rooms_per_user_count_the_last_24_hours_only(tmp_path: Path) -> None:
    clock = Clock()
    history = SqliteHistory(tmp_path / "h.sqlite3", clock=clock, quota=HistoryQuota(rooms_per_user=2))
    await history.open()
    try:
        await history.append("r1", user("a"), "x", None)
        clock.now += 3600
        await history.append("r2", user("a"), "x", None)
        clock.now += DAY_MS / 1000 - 3600 - 1  # r1 started 24 h minus a second ago
        with pytest.raises(HistoryFull, match="24 hours: post in a room that exists, or wait"):
            await history.append("r3", user("a"), "x", None)
        await history.append("r3", user("b"), "x", None)  # another user's count is their own
        clock.now += 2  # r1 is now older than 24 h
        await history.append("r4", user("a"), "x", None)
        with pytest.raises(HistoryFull, match="you started 2 rooms"):
            await history.append("r5", user("a"), "x", None)
    finally:
        await history.close()


@pytest.mark.anyio
async def test_joining_or_reading_a_room_starts_nothing(tmp_path: Path) -> None:
    history = SqliteHistory(tmp_path / "h.sqlite3", quota=HistoryQuota(max_rooms=1))
    await history.open()
    try:
        for i in range(5):
            assert (await history.page(f"empty-{i}", None, 10)).messages == []
            assert (await history.page(f"empty-{i}", "0-0", 10)).messages == []
        await history.append("first", user("a"), "x", None)
        with pytest.raises(HistoryFull, match="at most 1 rooms: post in one that exists"):
            await history.append("second", user("b"), "x", None)
        await history.append("first", user("b"), "x", None)
    finally:
        await history.close()


@pytest.mark.anyio
async def test_a_store_made_before_the_ledger_is_counted_from_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    history = SqliteHistory(path, quota=HistoryQuota(rooms_per_user=2))
    await history.open()
    for room in ("r1", "r2"):
        for text in ("one", "two ü"):
            await history.append(room, user("a"), text, None)
    stored = history.ledger.bytes
    await history.close()
    with sqlite3.connect(path) as db:  # as a gateway from before the ledger left it
        db.execute("DROP TABLE rooms")
        body_bytes = db.execute("SELECT SUM(LENGTH(CAST(body AS BLOB))) FROM messages").fetchone()[0]
    assert stored == body_bytes

    again = SqliteHistory(path, quota=HistoryQuota(max_rooms=3, rooms_per_user=2, max_bytes=stored + 400))
    await again.open()
    try:
        assert again.ledger.bytes == stored
        # Rooms from before have no known starter: they count in the total, not against anyone's day.
        await again.append("r3", user("a"), "x", None)
        with pytest.raises(HistoryFull, match="at most 3 rooms"):
            await again.append("r4", user("a"), "x", None)
        await again.append("r1", user("b"), "x", None)
        with pytest.raises(HistoryFull, match="GATEWAY_HISTORY_MAX_BYTES"):
            await again.append("r1", user("b"), "y" * 400, None)
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_full_history_still_takes_messages_in_rooms_that_roll_over(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    clock = Clock()  # one millisecond for all: ids, and so stored sizes, stay the same length
    history = SqliteHistory(path, limit_per_room=3, clock=clock)
    await history.open()
    for i in range(3):
        await history.append("busy", user("a"), f"m{i}", None)
    full_at = history.ledger.bytes
    await history.close()

    full = SqliteHistory(path, limit_per_room=3, clock=clock, quota=HistoryQuota(max_bytes=full_at))
    await full.open()
    try:
        # At its bound the room drops its oldest message for each new one: no byte more in all.
        for i in range(3, 6):
            await full.append("busy", user("a"), f"m{i}", None)
        assert full.ledger.bytes == full_at
        assert [m["text"] for m in (await full.page("busy", None, 10)).messages] == ["m3", "m4", "m5"]
        with pytest.raises(HistoryFull, match="GATEWAY_HISTORY_MAX_BYTES"):
            await full.append("busy", user("a"), "longer than the one it replaces", None)
        with pytest.raises(HistoryFull, match="GATEWAY_HISTORY_MAX_BYTES"):
            await full.append("new", user("b"), "m", None)
        assert (await full.page("new", None, 10)).messages == []
        assert full.ledger.bytes == full_at
    finally:
        await full.close()
    with sqlite3.connect(path) as db:  # the ledger on disk agrees with what is stored
        assert db.execute("SELECT SUM(bytes) FROM rooms").fetchone()[0] == db.execute(
            "SELECT SUM(LENGTH(CAST(body AS BLOB))) FROM messages").fetchone()[0] == full_at
        assert db.execute("SELECT room FROM rooms").fetchall() == [("busy",)]
