"""Editing and deleting one's own messages, within the window, over SQLite and over Redis; never another's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.chat.broker import MemoryBroker
from gateway.chat.frames import Edit, FrameError, decode_frame
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits, Member
from gateway.chat.redis_broker import RedisBroker
from tests.hubs import RunningHubs

LIMITS = {"message_rate": 10_000, "message_burst": 10_000, "presence_settle": 0}


def taken(member: Member) -> list[dict[str, Any]]:
    frames = [json.loads(f) for f in member.outbox.queued()]
    member.outbox.discard_queued()
    return frames


def of_type(member: Member, *kinds: str) -> list[dict[str, Any]]:
    return [f for f in taken(member) if f["type"] in kinds]


async def eventually(member: Member, *kinds: str) -> list[dict[str, Any]]:
    """Frames of `kinds` (over Redis they come back through the events channel)."""
    for _ in range(250):
        got = of_type(member, *kinds)
        if got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kinds} frame")


def user(name: str) -> dict[str, str]:
    return {"id": f"idp:{name}", "name": name.title()}


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path, running_hubs: RunningHubs) -> Any:
    async def start(**limits: Any) -> Hub:
        if request.param == "sqlite":
            broker: Any = MemoryBroker(SqliteHistory(tmp_path / f"h{len(running_hubs.started)}.sqlite3"))
        else:
            broker = RedisBroker(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
        return await running_hubs.start(broker, HubLimits(**LIMITS | limits))

    return start


async def room_with_one_message(hub: Hub) -> tuple[Member, Member, str]:
    ann, bob = hub.member("r", user("ann")), hub.member("r", user("bob"))
    await hub.join(ann)
    await hub.join(bob)
    await hub.post(ann, "helo", "c1")
    [ack] = of_type(ann, "ack")
    await eventually(bob, "message")
    return ann, bob, ack["id"]


async def room_with_an_edit(hub: Hub) -> tuple[Member, Member, str]:
    """`room_with_one_message`, then ann edits it to "hello" (bob has seen the edit)."""
    ann, bob, message_id = await room_with_one_message(hub)
    await hub.change(ann, message_id, "hello")
    await eventually(bob, "edit")
    return ann, bob, message_id


@pytest.mark.anyio
async def test_the_author_edits_and_everyone_sees_it_also_later(make: Any) -> None:
    hub = await make()
    ann, bob, message_id = await room_with_one_message(hub)
    await hub.change(ann, message_id, "hello")
    [edit] = await eventually(bob, "edit")
    assert (edit["id"], edit["text"], edit["user"]["id"]) == (message_id, "hello", "idp:ann") and edit["edited_at"]
    [stored] = (await hub.broker.page("r", None, 10)).messages
    assert stored["text"] == "hello" and stored["edited_at"] == edit["edited_at"]
    carol = hub.member("r", user("carol"))  # a join now: from the room's tail in memory
    await hub.join(carol)
    [history] = of_type(carol, "history")
    assert history["messages"][0]["text"] == "hello"


@pytest.mark.anyio
async def test_nobody_edits_or_deletes_another_users_message(make: Any) -> None:
    hub = await make()
    ann, bob, message_id = await room_with_one_message(hub)
    await hub.change(bob, message_id, "pwned")
    await hub.change(bob, message_id, None)
    refusals = of_type(bob, "error")
    assert [(f["code"], f["id"]) for f in refusals] == [("edit_refused", message_id)] * 2
    assert all(f["message"] == "you can only edit or delete your own messages" for f in refusals)
    await asyncio.sleep(0.1)
    assert of_type(ann, "edit", "delete") == []
    assert [m["text"] for m in (await hub.broker.page("r", None, 10)).messages] == ["helo"]


@pytest.mark.anyio
async def test_changes_after_the_window_are_refused(make: Any) -> None:
    hub = await make(edit_window=0.05)
    ann, _, message_id = await room_with_one_message(hub)
    await asyncio.sleep(0.1)
    await hub.change(ann, message_id, "too late")
    [refused] = of_type(ann, "error")
    assert refused["code"] == "edit_refused"
    assert refused["message"] == "too late: messages can be edited or deleted for 0.05 seconds after sending"


@pytest.mark.anyio
async def test_a_window_of_0_turns_editing_off(make: Any) -> None:
    hub = await make(edit_window=0)
    ann, _, message_id = await room_with_one_message(hub)
    await hub.change(ann, message_id, None)
    [refused] = of_type(ann, "error")
    assert refused["code"] == "edit_refused" and "GATEWAY_EDIT_WINDOW is 0" in refused["message"]


@pytest.mark.anyio
async def test_a_deleted_message_stays_deleted(make: Any) -> None:
    hub = await make()
    ann, bob, message_id = await room_with_one_message(hub)
    await hub.change(ann, message_id, None)
    [deleted] = await eventually(bob, "delete")
    assert deleted["id"] == message_id and "text" not in deleted
    [stored] = (await hub.broker.page("r", None, 10)).messages
    assert stored["deleted"] is True and stored["text"] == ""
    await hub.change(ann, message_id, "back from the dead")
    assert of_type(ann, "error")[0]["message"] == "this message was deleted"
    await hub.change(ann, "1-0", "no such")
    assert "no such message" in of_type(ann, "error")[0]["message"]


@pytest.mark.anyio
async def test_a_resuming_socket_gets_the_changes_made_while_it_was_away(make: Any) -> None:
    hub = await make()
    ann, bob, message_id = await room_with_one_message(hub)
    await hub.leave(bob)
    await hub.change(ann, message_id, "edited while bob was away")
    back = hub.member("r", user("bob"))
    await hub.join(back)
    taken(back)
    await hub.resume(back, message_id)  # bob holds the message: only the change tells him
    await asyncio.sleep(0.05)
    changes = [f for f in taken(back) if f["type"] == "edit"]
    assert [c["text"] for c in changes] == ["edited while bob was away"]


@asynccontextmanager
async def two_instances(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[list[Hub], Member, Member]]:
    """Two hubs over one Redis; ann in room r on the first, bob on the second."""
    hubs = [Hub(RedisBroker(redis_url, redis_prefix), HubLimits(**LIMITS)) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        ann, bob = hubs[0].member("r", user("ann")), hubs[1].member("r", user("bob"))
        await hubs[0].join(ann)
        await hubs[1].join(bob)
        yield hubs, ann, bob
    finally:
        for hub in hubs:
            await hub.stop()


@pytest.mark.anyio
async def test_a_change_on_one_instance_reaches_the_other(redis_url: str, redis_prefix: str) -> None:
    async with two_instances(redis_url, redis_prefix) as (hubs, ann, bob):
        await hubs[0].post(ann, "one", "c1")
        [message] = await eventually(bob, "message")
        await hubs[0].change(ann, message["id"], "uno")
        [edit] = await eventually(bob, "edit")
        assert edit["text"] == "uno"
        await hubs[0].change(ann, message["id"], None)
        assert (await eventually(bob, "delete"))[0]["id"] == message["id"]
        page = await hubs[1].broker.page("r", None, 5)
        assert page.messages[0]["deleted"] is True


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type":"edit","id":"1-0","text":"new"}', Edit("1-0", "new")),
    ('{"type":"delete","id":"1-0"}', Edit("1-0", None)),
])
def test_edit_and_delete_frames(text: str, expected: Edit) -> None:
    assert decode_frame(text) == expected


@pytest.mark.parametrize(("text", "code"), [
    ('{"type":"edit","id":"1-0"}', "bad_frame"), ('{"type":"edit","id":"1-0","text":" "}', "bad_frame"),
    ('{"type":"edit","text":"x"}', "bad_frame"), ('{"type":"delete","id":7}', "bad_frame"),
    ('{"type":"edit","id":"1-0","text":"' + "x" * 2001 + '"}', "too_big"),
])
def test_malformed_edit_and_delete_frames(text: str, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text)
    assert info.value.code == code and info.value.close_code is None


@pytest.mark.anyio
async def test_a_malformed_id_is_bad_frame(make: Any) -> None:
    hub = await make()
    ann, _, _ = await room_with_one_message(hub)
    await hub.change(ann, "nope", "x")
    assert of_type(ann, "error")[0]["code"] == "bad_frame"


@pytest.mark.anyio
async def test_a_storm_of_resumes_reads_the_rooms_changes_once_until_the_next_change(make: Any) -> None:
    hub = await make()
    ann, bob, message_id = await room_with_an_edit(hub)
    read = hub.broker.changes_since
    reads: list[str] = []

    async def counting(room: str, after: str, limit: int) -> Any:
        reads.append(after)
        return await read(room, after, limit)

    hub.broker.changes_since = counting
    crowd = [hub.member("r", user(f"u{i}")) for i in range(20)]
    for member in crowd:
        await hub.join(member, after="0-0")
        await hub.send_changes(member, after="0-0")
    assert reads == ["0-0"]  # one read for twenty sockets resuming from the same point
    assert all([e["text"] for e in of_type(member, "edit")] == ["hello"] for member in crowd)
    await hub.change(ann, message_id, None)  # a new change: the next resume reads again, and sees it
    await eventually(bob, "delete")
    late = hub.member("r", user("late"))
    await hub.join(late, after="0-0")
    await hub.send_changes(late, after="0-0")
    assert reads == ["0-0", "0-0"]
    assert [e["type"] for e in of_type(late, "edit", "delete")] == ["edit", "delete"]


@pytest.mark.anyio
async def test_resumes_that_come_while_the_changes_are_read_wait_for_that_one_read(make: Any) -> None:
    """A storm's joins arrive together: without a shared read each one would ask the store (SQLite's one
    thread), one after the other. A change that comes while the read is under way is not shared: the
    read may have missed it."""
    hub = await make()
    ann, bob, message_id = await room_with_an_edit(hub)
    read = hub.broker.changes_since
    reads: list[str] = []
    release = asyncio.Event()

    async def slow(room: str, after: str, limit: int) -> Any:
        reads.append(after)
        await release.wait()
        return await read(room, after, limit)

    hub.broker.changes_since = slow

    async def resume(member: Member) -> None:
        await hub.join(member, after="0-0")
        await hub.send_changes(member, after="0-0")

    crowd = [hub.member("r", user(f"u{i}")) for i in range(20)]
    waiting = [asyncio.ensure_future(resume(member)) for member in crowd]
    await until(lambda: reads)
    for _ in range(20):
        await asyncio.sleep(0)
    assert reads == ["0-0"]  # twenty joins under way, one read
    release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert all([e["text"] for e in of_type(member, "edit")] == ["hello"] for member in crowd)

    await hub.change(ann, message_id, "again")  # the kept copy is dropped: the next resume reads
    await eventually(bob, "edit")
    release.clear()
    first = asyncio.ensure_future(resume(hub.member("r", user("a"))))
    await until(lambda: len(reads) == 2)
    await hub.change(ann, message_id, "third")  # while that read is under way
    late = hub.member("r", user("late"))
    second = asyncio.ensure_future(resume(late))
    await until(lambda: len(reads) == 3)  # the change: a read of its own, not the one begun before it
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert reads == ["0-0", "0-0", "0-0"]
    assert [e["text"] for e in of_type(late, "edit")][-1] == "third"


async def until(condition: Any, turns: int = 10_000) -> None:
    """Let the loop run until `condition()` holds; fails (instead of hanging) after `turns` turns."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not come true")


@pytest.mark.anyio
async def test_a_failed_read_of_the_changes_is_not_kept(make: Any) -> None:
    from gateway.chat.history import StoreUnavailable

    hub = await make()
    await room_with_an_edit(hub)
    read = hub.broker.changes_since
    failures = [StoreUnavailable("down")]

    async def flaky(room: str, after: str, limit: int) -> Any:
        if failures:
            raise failures.pop()
        return await read(room, after, limit)

    hub.broker.changes_since = flaky
    first, second = hub.member("r", user("a")), hub.member("r", user("b"))
    await hub.join(first, after="0-0")
    await hub.send_changes(first, after="0-0")  # logged, not raised: the socket stays
    assert of_type(first, "edit") == []
    await hub.join(second, after="0-0")
    await hub.send_changes(second, after="0-0")
    assert [e["text"] for e in of_type(second, "edit")] == ["hello"]
