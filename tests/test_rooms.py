"""The room list: unread counts after the user's last read (kept server-side), mentions, and rooms a rule
forbids left out; over SQLite and over Redis, and through GET /rooms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.chat.broker import MemoryBroker
from gateway.chat.edits import Change
from gateway.chat.frames import FrameError, Read, decode_frame
from gateway.chat.history import SqliteHistory
from gateway.chat.redis_broker import RedisBroker
from gateway.chat.rooms import mentions
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory, SignIn

ANN = {"id": "idp:ann", "name": "Ann"}
BOB = {"id": "idp:bob", "name": "Bob Lee"}


@pytest.fixture(params=["sqlite", "redis"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        store: Any = MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3"))
    else:
        store = RedisBroker(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
    await store.start(lambda event: None)
    yield store
    await store.stop()


def counts(rooms: list[Any]) -> dict[str, tuple[int, bool]]:
    return {room.name: (room.unread, room.mention) for room in rooms}


@pytest.mark.anyio
async def test_unread_counts_follow_the_last_read_and_skip_ones_own(broker: Any) -> None:
    for room, text in (("a", "one"), ("a", "two"), ("b", "three")):
        await broker.publish(room, ANN, text, None)
    await asyncio.sleep(0.005)  # Redis ids are per room: within one ms, two rooms' newest have no order
    mine = await broker.publish("a", BOB, "bob's own", None)
    assert counts(await broker.rooms(BOB["id"], BOB["name"])) == {"a": (2, False), "b": (1, False)}
    assert [room.name for room in await broker.rooms(BOB["id"], BOB["name"])] == ["a", "b"]  # newest first
    await broker.mark_read(BOB["id"], "a", mine.message["id"])
    await broker.mark_read(BOB["id"], "a", "1-0")  # an older mark from a tab that was behind: ignored
    assert counts(await broker.rooms(BOB["id"], BOB["name"])) == {"a": (0, False), "b": (1, False)}
    assert counts(await broker.rooms(ANN["id"], ANN["name"])) == {"a": (1, False), "b": (0, False)}


@pytest.mark.anyio
async def test_a_mention_marks_the_room_until_read(broker: Any) -> None:
    stored = await broker.publish("c", ANN, "hey @bob lee, look", None)
    await broker.publish("c", ANN, "and @bobby is someone else", None)
    assert counts(await broker.rooms(BOB["id"], BOB["name"])) == {"c": (2, True)}
    await broker.mark_read(BOB["id"], "c", stored.message["id"])
    assert counts(await broker.rooms(BOB["id"], BOB["name"])) == {"c": (1, False)}


@pytest.mark.anyio
async def test_a_deleted_message_is_not_unread(broker: Any) -> None:
    stored = await broker.publish("d", ANN, "oops @Bob Lee", None)
    await broker.change("d", Change(stored.message["id"], ANN["id"], None, 0, "15 minutes"))
    assert counts(await broker.rooms(BOB["id"], BOB["name"])) == {"d": (0, False)}


@pytest.mark.parametrize(("text", "name", "expected"), [
    ("@ann hi", "Ann", True), ("hi @ANN.", "Ann", True), ("@annie", "Ann", False), ("mail@ann", "Ann", False),
    ("@Bob Lee!", "Bob Lee", True), ("@bob", "Bob Lee", False), ("@ann", "", False),
])
def test_mentions(text: str, name: str, expected: bool) -> None:
    assert mentions(text, name) is expected


def test_read_frames() -> None:
    assert decode_frame('{"type":"read","id":"5-1"}') == Read("5-1")
    for bad in ('{"type":"read"}', '{"type":"read","id":3}', '{"type":"read","id":""}'):
        with pytest.raises(FrameError) as info:
            decode_frame(bad)
        assert info.value.code == "bad_frame"


def test_get_rooms_lists_only_rooms_the_user_may_enter(idp: FakeIdP, make_settings: SettingsFactory,
                                                        sign_in: SignIn) -> None:
    settings = make_settings(rooms={"staff-only": {"allowed_groups": ["staff"]}})
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        broker = client.app.state.gateway.hub.broker  # type: ignore[attr-defined]
        for room in ("lobby", "staff-only", "lobby"):
            client.portal.call(broker.publish, room, ANN, "@alice news", None)  # type: ignore[union-attr]
        assert client.get("/rooms").status_code == 401
        sign_in(client, sub="alice")
        answer = client.get("/rooms")
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
        [lobby] = answer.json()["rooms"]
        assert (lobby["name"], lobby["unread"]) == ("lobby", 2) and isinstance(lobby["last_ts"], int)


def test_a_users_read_marks_older_than_90_days_are_forgotten(tmp_path: Path) -> None:
    import sqlite3

    from gateway.chat.rooms import READS_SCHEMA, sqlite_mark_read

    db = sqlite3.connect(tmp_path / "reads.sqlite3")
    db.executescript(READS_SCHEMA)
    day = 86_400_000
    sqlite_mark_read(db, "idp:bob", "old", (1_000 * day, 0))
    sqlite_mark_read(db, "idp:ann", "old", (1_000 * day, 0))
    sqlite_mark_read(db, "idp:bob", "new", (1_089 * day, 0))
    assert db.execute("SELECT COUNT(*) FROM reads").fetchone()[0] == 3  # 89 days: kept
    sqlite_mark_read(db, "idp:bob", "new", (1_091 * day, 0))
    assert sorted(db.execute("SELECT user_id, room FROM reads").fetchall()) == [
        ("idp:ann", "old"), ("idp:bob", "new")]  # only bob's own old mark went
