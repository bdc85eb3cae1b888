"""The hub over the embedded broker (SQLite history), without any web framework."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.chat.backlog import HistoryBacklog
from gateway.chat.broker import MemoryBroker
from gateway.chat.frames import FrameError, Ping, Resume, SendMessage, decode_frame
from gateway.chat.history import SqliteHistory, parse_id
from gateway.chat.hub import FLOODING, Hub, HubLimits, Member
from gateway.chat.outbox import TOO_SLOW, Outbox
from gateway.chat.presence import Timer


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now



def frames(member: Member) -> list[dict[str, Any]]:
    taken = [json.loads(f) for f in member.outbox.queued()]
    member.outbox.discard_queued()
    return taken


def of_type(member: Member, kind: str) -> list[dict[str, Any]]:
    return [f for f in frames(member) if f["type"] == kind]


async def sent(member: Member, kind: str) -> list[dict[str, Any]]:
    """The frames of `kind` the socket's writer would send now, its history backlog included."""
    outbox, taken = member.outbox, []
    while len(outbox) or (isinstance(outbox.backlog, HistoryBacklog) and not outbox.backlog.done):
        frame = await outbox.get()
        if frame is None:
            break
        taken.append(json.loads(frame))
    return [f for f in taken if f["type"] == kind]


def user(name: str) -> dict[str, str]:
    return {"id": f"idp:{name}", "name": name.title()}


async def make_hub(path: Path, clock: Clock | None = None, timer: Timer | None = None, **limits: Any) -> Hub:
    clock = clock or Clock()
    limits.setdefault("presence_settle", 0)  # presence at once, unless a test is about coalescing
    hub = Hub(MemoryBroker(SqliteHistory(path, limits.pop("history_limit", 10_000), clock)),
              HubLimits(**limits), clock, timer)
    await hub.start()
    return hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await make_hub(tmp_path / "h.sqlite3")
    yield hub
    await hub.stop()


@pytest.mark.anyio
async def test_join_sends_welcome_history_presence_first(hub: Hub) -> None:
    alice = hub.member("r", user("alice"))
    alice.outbox.put('{"type":"queued-before-join"}')
    await hub.join(alice)
    kinds = [f["type"] for f in frames(alice)]
    assert kinds[:3] == ["welcome", "history", "presence"]
    assert "queued-before-join" in kinds[3:]


@pytest.mark.anyio
async def test_messages_are_ordered_and_reach_the_room_only(hub: Hub) -> None:
    a, b, other = hub.member("r", user("a")), hub.member("r", user("b")), hub.member("x", user("c"))
    for member in (a, b, other):
        await hub.join(member)
        frames(member)
    for i in range(5):
        await hub.post(a, f"m{i}", None)
    received = of_type(b, "message")
    assert [m["text"] for m in received] == [f"m{i}" for i in range(5)]
    ids = [parse_id(m["id"]) for m in received]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert of_type(other, "message") == []


@pytest.mark.anyio
async def test_a_frame_is_encoded_once_for_all_members(hub: Hub) -> None:
    members = [hub.member("r", user(f"u{i}")) for i in range(20)]
    for member in members:
        await hub.join(member)
        frames(member)
    await hub.post(members[0], "hi", None)
    assert len({id(m.outbox.queued()[-1]) for m in members}) == 1  # the very same str object


@pytest.mark.anyio
async def test_ack_comes_after_storing_and_a_resend_is_stored_once(hub: Hub) -> None:
    a, b = hub.member("r", user("a")), hub.member("r", user("b"))
    await hub.join(a)
    await hub.join(b)
    frames(a), frames(b)
    await hub.post(a, "once", "c-1")
    first = frames(a)
    assert [f["type"] for f in first] == ["message", "ack"]
    await hub.post(a, "once", "c-1")  # a resend after reconnecting
    second = frames(a)
    assert second == [{"type": "ack", "client_id": "c-1", "id": first[1]["id"]}]
    assert len(of_type(b, "message")) == 1
    page = await hub.broker.page("r", None, 50)
    assert [m["text"] for m in page.messages] == ["once"]


@pytest.mark.anyio
async def test_same_client_id_from_another_user_is_a_different_message(hub: Hub) -> None:
    a, b = hub.member("r", user("a")), hub.member("r", user("b"))
    await hub.join(a)
    await hub.join(b)
    await hub.post(a, "x", "same")
    await hub.post(b, "y", "same")
    assert len((await hub.broker.page("r", None, 50)).messages) == 2


@pytest.mark.anyio
async def test_history_is_bounded_per_room_and_join_sends_the_last_ones(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_limit=30, history_on_join=10,
                         message_rate=1000, message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(40):
            await hub.post(writer, f"m{i}", None)
        late = hub.member("r", user("late"))
        await hub.join(late)
        history = of_type(late, "history")[0]
        assert [m["text"] for m in history["messages"]] == [f"m{i}" for i in range(30, 40)]
        assert history["truncated"] is True
        kept = await hub.broker.page("r", "0-0", 10_000)
        assert len(kept.messages) == 30 and kept.messages[0]["text"] == "m10"
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_resume_sends_everything_after_an_id_and_flags_a_lost_resume_point(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_limit=20, message_rate=1000, message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(10):
            await hub.post(writer, f"m{i}", None)
        ids = [m["id"] for m in (await hub.broker.page("r", None, 50)).messages]
        reader = hub.member("r", user("reader"))
        await hub.join(reader)
        frames(reader)
        await hub.resume(reader, ids[6])
        resumed = (await sent(reader, "history"))[0]
        assert [m["text"] for m in resumed["messages"]] == ["m7", "m8", "m9"]
        assert resumed["truncated"] is False
        for i in range(10, 40):  # pushes m0..m19 out of the bounded room
            await hub.post(writer, f"m{i}", None)
        frames(reader)
        await hub.resume(reader, ids[6])
        lost = (await sent(reader, "history"))[0]
        assert lost["truncated"] is True
        assert lost["messages"][0]["text"] == "m20" and len(lost["messages"]) == 20
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_resume_ids_compare_as_integer_pairs_not_strings(hub: Hub) -> None:
    writer = hub.member("r", user("w"))
    await hub.join(writer)
    await hub.post(writer, "late", None)
    frames(writer)
    # "999-0" > "1700000000000-0" as strings, but it is far older as a pair.
    await hub.resume(writer, "999-0")
    assert [m["text"] for m in (await sent(writer, "history"))[0]["messages"]] == ["late"]


@pytest.mark.anyio
async def test_resume_with_a_malformed_id_is_an_error_frame(hub: Hub) -> None:
    member = hub.member("r", user("a"))
    await hub.join(member)
    frames(member)
    await hub.resume(member, "10-x")
    assert of_type(member, "error")[0]["code"] == "bad_frame"


@pytest.mark.anyio
async def test_history_survives_a_restart_over_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    clock = Clock()
    first = await make_hub(path, clock)
    member = first.member("r", user("a"))
    await first.join(member)
    await first.post(member, "before restart", "c1")
    last_id = of_type(member, "message")[0]["id"]
    await first.stop()
    clock.now -= 10  # a clock that stepped back across the restart still gives newer ids
    second = await make_hub(path, clock)
    try:
        again = second.member("r", user("a"))
        await second.join(again)
        assert [m["text"] for m in of_type(again, "history")[0]["messages"]] == ["before restart"]
        await second.post(again, "before restart", "c1")  # the resend is still recognised
        assert of_type(again, "ack")[0]["id"] == last_id
        await second.post(again, "after", None)
        newest = (await second.broker.page("r", None, 5)).messages[-1]
        assert parse_id(newest["id"]) > parse_id(last_id)
    finally:
        await second.stop()


@pytest.mark.anyio
async def test_slow_consumer_is_closed_with_4408_while_others_keep_receiving(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", outbox_size=5, message_rate=1000, message_burst=1000)
    try:
        slow, fast, writer = hub.member("r", user("s")), hub.member("r", user("f")), hub.member("r", user("w"))
        for member in (slow, fast, writer):
            await hub.join(member)
        frames(fast), frames(writer)
        fast.outbox.limit = 100
        for i in range(8):
            await hub.post(writer, f"m{i}", None)
            frames(writer)
        assert slow.outbox.close_code == TOO_SLOW
        assert len(of_type(fast, "message")) == 8
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_presence_counts_a_user_with_two_tabs_once(hub: Hub) -> None:
    watcher = hub.member("r", user("watcher"))
    await hub.join(watcher)
    frames(watcher)
    tab1, tab2 = hub.member("r", user("ann")), hub.member("r", user("ann"))
    await hub.join(tab1)
    await hub.join(tab2)
    assert [f["user"]["name"] for f in of_type(watcher, "join")] == ["Ann"]
    presence = next(f for f in frames(tab2) if f["type"] == "presence")
    assert sorted(u["name"] for u in presence["users"]) == ["Ann", "Watcher"]
    await hub.leave(tab1)
    assert of_type(watcher, "leave") == []
    await hub.leave(tab2)
    assert [f["user"]["name"] for f in of_type(watcher, "leave")] == ["Ann"]


@pytest.mark.anyio
async def test_rate_limit_then_4429_for_sustained_flooding(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", message_rate=0.001, message_burst=3, flood_strikes=5)
    try:
        member = hub.member("r", user("flood"))
        await hub.join(member)
        frames(member)
        for i in range(3):
            await hub.post(member, f"ok{i}", None)
        await hub.post(member, "too many", None)
        assert of_type(member, "error")[-1]["code"] == "rate_limited"
        for _ in range(4):
            await hub.post(member, "more", None)
        assert member.outbox.close_code == FLOODING
        assert len((await hub.broker.page("r", None, 50)).messages) == 3
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_disconnect_user_closes_every_socket_of_that_user(hub: Hub) -> None:
    a1, a2, b = hub.member("r", user("a")), hub.member("s", user("a")), hub.member("r", user("b"))
    for member in (a1, a2, b):
        await hub.join(member)
    await hub.disconnect_user("idp:a", 4401, "signed out")
    assert a1.outbox.close_code == a2.outbox.close_code == 4401
    assert b.outbox.close_code is None


@pytest.mark.anyio
async def test_outbox_delivers_in_order_then_signals_close() -> None:
    outbox = Outbox()
    outbox.put("a")
    outbox.put("b")
    outbox.close(1000)
    outbox.put("ignored")
    assert [await outbox.get(), await outbox.get(), await outbox.get()] == ["a", "b", None]


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type":"ping"}', Ping()),
    ('{"type":"message","text":"hi"}', SendMessage("hi", None)),
    ('{"type":"message","text":"hi","client_id":"c"}', SendMessage("hi", "c")),
    ('{"type":"resume","after":"1-0"}', Resume("1-0")),
])
def test_decode_frame(text: str, expected: object) -> None:
    assert decode_frame(text) == expected


@pytest.mark.parametrize(("text", "code", "close"), [
    ("nope", "bad_frame", 1007), ("[]", "bad_frame", None), ('{"type":1}', "bad_frame", None),
    ('{"type":"message","text":""}', "bad_frame", None),
    ('{"type":"message","text":"' + "x" * 2001 + '"}', "too_big", None),
    ('{"type":"message","text":"x","client_id":""}', "bad_frame", None),
    ('{"type":"resume"}', "bad_frame", None),
])
def test_decode_frame_errors(text: str, code: str, close: int | None) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text)
    assert info.value.code == code and info.value.close_code == close


@pytest.mark.anyio
async def test_joining_with_after_sends_everything_since_instead_of_the_last_page(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_on_join=3, message_rate=1000, message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(10):
            await hub.post(writer, f"m{i}", None)
        ids = [m["id"] for m in (await hub.broker.page("r", None, 50)).messages]
        back = hub.member("r", user("back"))
        await hub.join(back, after=ids[1])
        history = (await sent(back, "history"))[0]
        assert [m["text"] for m in history["messages"]] == [f"m{i}" for i in range(2, 10)]
        assert history["truncated"] is False
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_a_storm_of_resumes_is_answered_from_memory_when_it_holds_everything_since(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_on_join=5, message_rate=1000, message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(8):
            await hub.post(writer, f"m{i}", None)
        ids = [m["id"] for m in (await hub.broker.page("r", None, 50)).messages]
        read = hub.broker.page_text
        store_pages: list[str] = []

        async def counting_page_text(room: str, after: str, limit: int) -> Any:
            store_pages.append(after)
            return await read(room, after, limit)

        hub.broker.page_text = counting_page_text  # type: ignore[method-assign]
        crowd = [hub.member("r", user(f"u{i}")) for i in range(20)]
        await asyncio.gather(*(hub.join(member, after=ids[5]) for member in crowd))
        assert store_pages == [] and hub.tails.store_reads == 1  # the writer's join filled the tail
        for member in crowd:
            got = frames(member)
            assert [f["type"] for f in got[:3]] == ["welcome", "history", "presence"]
            assert [m["text"] for m in got[1]["messages"]] == ["m6", "m7"] and got[1]["truncated"] is False
        caught_up = hub.member("r", user("caught-up"))  # nothing since: an empty page, from memory
        await hub.join(caught_up, after=ids[-1])
        assert of_type(caught_up, "history")[0]["messages"] == [] and store_pages == []
        # Older than the tail's oldest (m3): messages between may exist, so the store answers.
        old = hub.member("r", user("old"))
        await hub.join(old, after=ids[1])
        assert [m["text"] for m in (await sent(old, "history"))[0]["messages"]] == [f"m{i}" for i in range(2, 8)]
        assert store_pages == [ids[1]]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_a_resume_larger_than_a_page_goes_to_the_store_in_pages(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_on_join=50, history_page=4, message_rate=1000,
                         message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(10):
            await hub.post(writer, f"m{i}", None)
        back = hub.member("r", user("back"))
        await hub.join(back, after="0-0")  # the tail holds all ten, but they are more than a page of 4
        pages = await sent(back, "history")
        assert [len(page["messages"]) for page in pages] == [4, 4, 2]
        assert [m["text"] for page in pages for m in page["messages"]] == [f"m{i}" for i in range(10)]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_fan_out_writes_prebuilt_frames_directly_only_when_nothing_is_ahead(hub: Hub) -> None:
    from gateway.chat.hub import server_frame

    writer, fast, busy, refusing = (hub.member("r", user(n)) for n in ("w", "fast", "busy", "refusing"))
    for member in (writer, fast, busy, refusing):
        await hub.join(member)
    for member in (writer, fast, busy, refusing):
        frames(member)  # welcome, history, presence and the others' joins: read
    written: dict[str, list[bytes]] = {"fast": [], "busy": [], "refusing": []}
    fast.outbox.direct = lambda wire: written["fast"].append(wire) is None
    busy.outbox.direct = lambda wire: written["busy"].append(wire) is None
    refusing.outbox.direct = lambda wire: False  # back-pressure: the transport says no
    busy.outbox.put('{"type":"pong"}')  # something queued: a direct write would overtake it
    await hub.post(writer, "hello", None)
    assert len(written["fast"]) == 1 and written["busy"] == []
    message = next(f for f in frames(busy) if f["type"] == "message")
    assert written["fast"][0] == server_frame(json.dumps(message, separators=(",", ":"), ensure_ascii=False))
    assert [f["type"] for f in frames(refusing)] == ["message"]  # queued instead
    assert len(fast.outbox) == 0


def test_server_frame_lengths() -> None:
    from gateway.chat.hub import server_frame

    assert server_frame("a")[:2] == bytes((0x81, 1))
    assert server_frame("a" * 200)[:4] == bytes((0x81, 126, 0, 200))
    assert server_frame("a" * 70_000)[:2] == bytes((0x81, 127)) and len(server_frame("a" * 70_000)) == 70_010


class ManualTimer:
    """A timer the test fires by hand: presence batching without waiting in real time."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Any]] = []

    def __call__(self, delay: float, callback: Any) -> Any:
        entry = [delay, callback, False]
        self.due.append((delay, entry))

        class Handle:
            def cancel(self) -> None:
                entry[2] = True

        return Handle()

    def fire(self) -> list[float]:
        """Run every callback not cancelled; their delays."""
        pending, self.due = self.due, []
        delays = []
        for delay, entry in pending:
            if not entry[2]:
                delays.append(delay)
                entry[1]()
        return delays


@pytest.mark.anyio
async def test_a_storm_of_joins_reaches_each_socket_as_one_presence_list(tmp_path: Path) -> None:
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=5.0)
    try:
        watcher = hub.member("r", user("watcher"))
        await hub.join(watcher)
        frames(watcher)
        crowd = [hub.member("r", user(f"u{i}")) for i in range(50)]
        for member in crowd:
            await hub.join(member)
        assert of_type(watcher, "join") == []  # nothing yet: the room is not quiet
        assert timer.fire() == [0.2]  # one timer left standing for the room, not fifty
        await asyncio.sleep(0)  # the list is asked of the broker
        await asyncio.sleep(0)
        got = frames(watcher)
        assert [f["type"] for f in got] == ["presence"]
        assert {u["name"] for u in got[0]["users"]} == {"Watcher", *(f"U{i}" for i in range(50))}
        await hub.leave(crowd[0])  # a single change goes out as itself
        timer.fire()
        assert [(f["type"], f["user"]["name"]) for f in frames(watcher)] == [("leave", "U0")]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_sockets_joining_in_a_storm_get_their_list_with_the_rooms_batch(tmp_path: Path) -> None:
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=5.0)
    asked: list[bool] = []
    enter = hub.broker.enter

    async def counting_enter(room: str, user: dict[str, str], connection: str,
                             listed: bool = True) -> list[dict[str, str]]:
        asked.append(listed)
        return await enter(room, user, connection, listed)

    hub.broker.enter = counting_enter  # type: ignore[method-assign]
    try:
        first = hub.member("r", user("first"))
        await hub.join(first)  # a quiet room: its list at once, after welcome and history
        assert [f["type"] for f in frames(first)] == ["welcome", "history", "presence"]
        crowd = [hub.member("r", user(f"u{i}")) for i in range(30)]
        for member in crowd:
            await hub.join(member)
        assert asked == [True] + [False] * 30  # the storm's joiners asked the broker for no list
        for member in crowd:
            assert [f["type"] for f in frames(member)] == ["welcome", "history"]
        timer.fire()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        everyone = {"First", *(f"U{i}" for i in range(30))}
        for member in [first, *crowd]:
            got = frames(member)
            assert [f["type"] for f in got] == ["presence"]  # one list, the same for all, exact now
            assert {u["name"] for u in got[0]["users"]} == everyone
        late = hub.member("r", user("late"))  # the room is quiet again: a list of its own, at once
        await hub.join(late)
        assert [f["type"] for f in frames(late)] == ["welcome", "history", "presence"]
        timer.fire()  # its own join goes out as a join (no socket waits for a list)
        assert [f["type"] for f in frames(first)] == ["join"]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_sockets_that_asked_for_changes_get_what_changed_and_the_others_the_list(tmp_path: Path) -> None:
    """`?presence=changes`: a socket that has its list gets one `presence_changes` frame per batch; one
    that joined during the batch still gets the full list, and so does a socket that asked for lists."""
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=5.0)
    try:
        modern, legacy = hub.member("r", user("modern")), hub.member("r", user("legacy"))
        modern.presence_changes = True
        leaver = hub.member("r", user("leaver"))
        for member in (modern, legacy, leaver):
            await hub.join(member)
        timer.fire()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for member in (modern, legacy):
            frames(member)
        await hub.leave(leaver)
        crowd = [hub.member("r", user(f"u{i}")) for i in range(20)]
        for member in crowd:
            member.presence_changes = True
            await hub.join(member)
        timer.fire()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        everyone = {"Modern", "Legacy", *(f"U{i}" for i in range(20))}
        got = frames(modern)
        assert [f["type"] for f in got] == ["presence_changes"]
        assert {u["name"] for u in got[0]["joined"]} == {f"U{i}" for i in range(20)}
        assert [u["name"] for u in got[0]["left"]] == ["Leaver"]
        for member in (legacy, *crowd):  # a list-only client, and the joiners waiting for their first list
            got = [f for f in frames(member) if f["type"] not in ("welcome", "history")]
            assert [f["type"] for f in got] == ["presence"]
            assert {u["name"] for u in got[0]["users"]} == everyone
        assert hub.presence.frames_sent == 4  # per batch one list (to waiting and list-only sockets) + one change frame
        await hub.leave(legacy)  # only sockets with their lists and asking for changes: no list is read
        await hub.leave(crowd[0])
        present = hub.broker.present
        asked: list[str] = []

        async def counting_present(room: str) -> list[dict[str, str]]:
            asked.append(room)
            return await present(room)

        hub.broker.present = counting_present  # type: ignore[method-assign]
        timer.fire()
        await asyncio.sleep(0)
        assert asked == []
        got = frames(crowd[1])
        assert [f["type"] for f in got] == ["presence_changes"] and got[0]["joined"] == []
        assert {u["name"] for u in got[0]["left"]} == {"Legacy", "U0"}
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_joins_that_come_while_the_list_is_read_go_with_that_batch(tmp_path: Path) -> None:
    """In a storm the loop is busy: between a batch falling due and its list being read, more sockets
    join. The list then holds them; the next batch must not tell every socket of them again (that was
    half of a 10,000-client storm's presence bytes), and the joiners waiting for it get this list."""
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=5.0)
    present = hub.broker.present
    reading = asyncio.Event()
    release = asyncio.Event()

    async def slow_present(room: str) -> list[dict[str, str]]:
        reading.set()
        await release.wait()
        return await present(room)

    try:
        watcher = hub.member("r", user("watcher"))
        watcher.presence_changes = True
        await hub.join(watcher)
        frames(watcher)
        hub.presence._present = slow_present
        crowd = [hub.member("r", user(f"u{i}")) for i in range(10)]
        for member in crowd:
            member.presence_changes = True
            await hub.join(member)
        timer.fire()
        await asyncio.wait_for(reading.wait(), 5)  # the batch is due; its list is being read
        late = [hub.member("r", user(f"late{i}")) for i in range(10)]
        for member in late:
            member.presence_changes = True
            await hub.join(member)
        await hub.leave(crowd[0])
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        everyone = {"Watcher", *(f"U{i}" for i in range(1, 10)), *(f"Late{i}" for i in range(10))}
        got = frames(watcher)
        assert [f["type"] for f in got] == ["presence_changes"]
        assert {u["name"] for u in got[0]["joined"]} == everyone  # its own join was in the batch too
        assert [u["name"] for u in got[0]["left"]] == ["U0"]  # came and went: its latest change
        for member in (*crowd[1:], *late[1:]):  # waiting for a list (late0 had its own at once)
            lists = [f for f in frames(member) if f["type"] == "presence"]
            assert len(lists) == 1 and {u["name"] for u in lists[0]["users"]} == everyone
        timer.fire()  # the batch that had begun meanwhile went with this one: nothing more
        for _ in range(3):
            await asyncio.sleep(0)
        assert frames(watcher) == []
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_a_lone_join_during_a_pending_change_still_gets_a_list(tmp_path: Path) -> None:
    """One pending change (someone left) and one socket joining: the batch is sent as a list, not as
    the single `leave`, or the joiner would never learn who is here."""
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=5.0)
    try:
        stay, go = hub.member("r", user("stay")), hub.member("r", user("go"))
        await hub.join(stay)
        await hub.join(go)
        timer.fire()
        await asyncio.sleep(0)
        await hub.leave(go)
        second_tab = hub.member("r", user("stay"))  # no join event of its own: the user is already here
        await hub.join(second_tab)
        assert [f["type"] for f in frames(second_tab)] == ["welcome", "history"]
        timer.fire()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        got = frames(second_tab)
        assert [f["type"] for f in got] == ["presence"] and [u["name"] for u in got[0]["users"]] == ["Stay"]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_each_batch_of_a_storm_waits_for_twice_the_quiet_until_the_room_calms_down(tmp_path: Path) -> None:
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=2.0)
    try:
        await hub.join(hub.member("r", user("watcher")))
        quiet = []
        for i in range(5):
            clock.now += 0.1
            await hub.join(hub.member("r", user(f"u{i}")))
            quiet.append(timer.due[-1][0])
            timer.fire()
            await asyncio.sleep(0)
        assert quiet == [pytest.approx(d) for d in (0.2, 0.4, 0.8, 1.0, 1.0)]  # capped at max_settle (1 s)
        clock.now += 2.0  # quiet for max_wait: a new change waits for the first settle again
        await hub.join(hub.member("r", user("calm")))
        assert timer.due[-1][0] == pytest.approx(0.2)
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_presence_changes_wait_at_most_max_wait_even_in_a_long_storm(tmp_path: Path) -> None:
    clock, timer = Clock(), ManualTimer()
    hub = await make_hub(tmp_path / "h.sqlite3", clock, timer, presence_settle=0.2, presence_max_wait=1.0)
    try:
        watcher = hub.member("r", user("watcher"))
        await hub.join(watcher)
        for i in range(9):
            clock.now += 0.1
            await hub.join(hub.member("r", user(f"u{i}")))
        delays = [delay for delay, _ in timer.due]
        assert delays[-1] == pytest.approx(0.1, abs=1e-3)  # 0.9 s after the first change: 0.1 s of max_wait left
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_joins_read_the_room_from_memory_after_the_first(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_on_join=3, message_rate=1000, message_burst=1000)
    try:
        writer = hub.member("r", user("w"))
        await hub.join(writer)
        for i in range(5):
            await hub.post(writer, f"m{i}", None)
        members = [hub.member("r", user(f"u{i}")) for i in range(20)]
        await asyncio.gather(*(hub.join(member) for member in members))
        assert hub.tails.store_reads == 1  # the first join of the room; the storm after it reads none
        history = of_type(members[-1], "history")[0]
        assert [m["text"] for m in history["messages"]] == ["m2", "m3", "m4"] and history["truncated"] is True
        await hub.post(writer, "m5", None)  # delivered messages keep the tail current
        late = hub.member("r", user("late"))
        await hub.join(late)
        assert [m["text"] for m in of_type(late, "history")[0]["messages"]] == ["m3", "m4", "m5"]
        for member in [writer, *members, late]:
            await hub.leave(member)
        await hub.join(hub.member("r", user("again")))  # the room emptied: its tail was dropped
        assert hub.tails.store_reads == 2
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_history_limits_refuse_with_history_full_and_store_nothing(tmp_path: Path) -> None:
    from gateway.chat.quota import HistoryQuota

    history = SqliteHistory(tmp_path / "h.sqlite3", quota=HistoryQuota(max_rooms=4, rooms_per_user=2,
                                                                          max_bytes=1 << 20))
    hub = Hub(MemoryBroker(history), HubLimits(message_rate=1000, message_burst=1000, presence_settle=0))
    await hub.start()
    try:
        async def post(name: str, room: str, text: str = "hi") -> list[dict[str, Any]]:
            member = hub.member(room, user(name))
            await hub.join(member)
            frames(member)
            await hub.post(member, text, f"{name}-{room}-{len(text)}")
            await hub.leave(member)
            return [f for f in frames(member) if f["type"] in ("ack", "error")]

        assert (await post("a", "r1"))[0]["type"] == "ack"
        assert (await post("a", "r2"))[0]["type"] == "ack"
        refused = (await post("a", "r3"))[0]
        assert refused["code"] == "history_full" and "24 hours" in refused["message"]
        assert (await post("a", "r1", "again"))[0]["type"] == "ack"  # rooms that exist stay open to them
        assert (await post("b", "r3"))[0]["type"] == "ack"  # another user is not held back
        assert (await post("b", "r4"))[0]["type"] == "ack"
        full = (await post("c", "r5"))[0]
        assert full["code"] == "history_full" and "at most 4 rooms" in full["message"]
        assert (await hub.broker.page("r5", None, 10)).messages == []
        assert (await hub.broker.page("r3", None, 10)).messages[0]["user"]["id"] == "idp:b"
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_history_bytes_are_counted_across_restarts_and_pruning(tmp_path: Path) -> None:
    from gateway.chat.quota import HistoryQuota

    quota = HistoryQuota(max_bytes=1 << 20)
    path = tmp_path / "h.sqlite3"
    history = SqliteHistory(path, limit_per_room=5, quota=quota)
    await history.open()
    for _ in range(20):
        await history.append("r", user("a"), "x" * 1000, None)
    kept = history.ledger.bytes
    await history.close()
    assert 5 * 1000 < kept < 5 * 1200  # the 15 pruned ones no longer count
    again = SqliteHistory(path, limit_per_room=5, quota=HistoryQuota(max_bytes=kept + 500))
    await again.open()
    try:
        assert again.ledger.bytes == kept
        from gateway.chat.quota import HistoryFull

        with pytest.raises(HistoryFull, match="GATEWAY_HISTORY_MAX_BYTES"):
            await again.append("other", user("a"), "y" * 1000, None)
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_refused_message_names_its_client_id_and_when_to_send_it_again(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", message_rate=4, message_burst=1)
    try:
        member = hub.member("r", user("ann"))
        await hub.join(member)
        frames(member)
        await hub.post(member, "first", "c1")
        await hub.post(member, "second", "c2")
        [refused] = of_type(member, "error")
        assert {k: v for k, v in refused.items() if k != "retry_after"} == {
            "type": "error", "code": "rate_limited", "client_id": "c2",
            "message": "slow down: too many messages; send it again later"}
        assert 1 <= refused["retry_after"] <= 250  # ms until the bucket (4 a second) holds one again
        await asyncio.sleep(refused["retry_after"] / 1000)  # the buckets run on the monotonic clock
        await hub.post(member, "second", "c2")  # the resend, same client_id
        assert [f["client_id"] for f in of_type(member, "ack")] == ["c2"]
        assert [m["text"] for m in (await hub.broker.page("r", None, 10)).messages] == ["first", "second"]
    finally:
        await hub.stop()


@pytest.mark.parametrize(("text", "code"), [
    ('{"type":"message","text":"' + "x" * 2001 + '","client_id":"big"}', "too_big"),
    ('{"type":"message","text":" ","client_id":"big"}', "bad_frame"),
    ('{"type":"message","text":"\\ud800","client_id":"big"}', "bad_frame"),
])
def test_a_message_refused_by_its_frame_names_its_client_id(text: str, code: str) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text)
    assert (info.value.code, info.value.client_id) == (code, "big")
