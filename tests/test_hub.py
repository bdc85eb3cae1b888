"""The hub and per-socket outboxes, without any web framework."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.chat.frames import FrameError, Ping, SendMessage, decode_frame
from gateway.chat.hub import RECENT_LIMIT, Hub, Member
from gateway.chat.outbox import TOO_SLOW, Outbox


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ids(hub: Hub, n: int) -> list[tuple[int, int]]:
    return [tuple(map(int, hub.next_id().split("-"))) for _ in range(n)]  # type: ignore[misc]


def test_ids_increase_even_when_the_clock_stands_still_or_steps_back() -> None:
    clock = Clock()
    hub = Hub(clock)
    first = ids(hub, 3)
    clock.now -= 5
    later = ids(hub, 2)
    clock.now += 10
    last = ids(hub, 1)
    sequence = first + later + last
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    assert first[0][1] == 0 and first[1] == (first[0][0], 1)


def test_publish_reaches_every_member_of_the_room_only() -> None:
    hub = Hub(Clock())
    a, b, other = Member("r", {"id": "p:a", "name": "A"}), Member("r", {"id": "p:b", "name": "B"}), \
        Member("x", {"id": "p:c", "name": "C"})
    for member in (a, b, other):
        hub.join(member)
    message = hub.publish("r", a.user, "hi", "c1")
    assert len(a.outbox) == 1 and len(b.outbox) == 1 and len(other.outbox) == 0
    assert json.loads(a.outbox._frames[0]) == message
    assert message["client_id"] == "c1" and message["ts"] == 1_700_000_000_000


def test_frame_is_encoded_once_for_all_members() -> None:
    hub = Hub(Clock())
    members = [Member("r", {"id": f"p:{i}", "name": str(i)}) for i in range(50)]
    for member in members:
        hub.join(member)
    hub.publish("r", members[0].user, "hi", None)
    frames = {id(m.outbox._frames[0]) for m in members}
    assert len(frames) == 1  # the very same str object


def test_recent_messages_are_bounded_and_sent_on_join() -> None:
    hub = Hub(Clock())
    for i in range(RECENT_LIMIT + 5):
        hub.publish("r", {"id": "p:a", "name": "A"}, f"m{i}", None)
    recent = hub.join(Member("r", {"id": "p:b", "name": "B"}))
    assert len(recent) == RECENT_LIMIT
    assert recent[0]["text"] == "m5" and recent[-1]["text"] == f"m{RECENT_LIMIT + 4}"


def test_leaving_empties_the_room() -> None:
    hub = Hub(Clock())
    member = Member("r", {"id": "p:a", "name": "A"})
    hub.join(member)
    hub.leave(member)
    hub.leave(member)  # twice is harmless
    assert hub.members("r") == 0


def test_slow_consumer_is_closed_with_4408_and_others_keep_receiving() -> None:
    hub = Hub(Clock())
    slow = Member("r", {"id": "p:s", "name": "S"}, Outbox(limit=3))
    fast = Member("r", {"id": "p:f", "name": "F"}, Outbox(limit=100))
    hub.join(slow)
    hub.join(fast)
    for i in range(5):
        hub.publish("r", fast.user, f"m{i}", None)
    assert slow.outbox.close_code == TOO_SLOW and len(slow.outbox) == 0
    assert fast.outbox.close_code is None and len(fast.outbox) == 5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_outbox_delivers_in_order_then_signals_close() -> None:
    outbox = Outbox()
    outbox.put("a")
    outbox.put("b")
    outbox.close(1000)
    outbox.put("ignored")
    assert [await outbox.get(), await outbox.get(), await outbox.get()] == ["a", "b", None]


@pytest.mark.anyio
async def test_outbox_get_waits_for_a_frame() -> None:
    outbox = Outbox()
    waiter = asyncio.create_task(outbox.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    outbox.put("x")
    assert await asyncio.wait_for(waiter, 1) == "x"


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type":"ping"}', Ping()),
    ('{"type":"message","text":"hi"}', SendMessage("hi", None)),
    ('{"type":"message","text":"hi","client_id":"c"}', SendMessage("hi", "c")),
])
def test_decode_frame(text: str, expected: object) -> None:
    assert decode_frame(text) == expected


@pytest.mark.parametrize(("text", "code", "close"), [
    ("nope", "bad_frame", 1007), ("[]", "bad_frame", None), ('{"type":1}', "bad_frame", None),
    ('{"type":"message","text":""}', "bad_frame", None), ('{"type":"message","text":"' + "x" * 2001 + '"}',
                                                          "too_big", None),
    ('{"type":"message","text":"x","client_id":""}', "bad_frame", None),
])
def test_decode_frame_errors(text: str, code: str, close: int | None) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(text)
    assert info.value.code == code and info.value.close_code == close
