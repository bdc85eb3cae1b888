"""Two hubs over one real Redis (the Redis broker): shared rooms, history, dedupe, presence, control."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from gateway.chat.history import StoreUnavailable, parse_id
from gateway.chat.hub import Hub, HubLimits, Member
from gateway.chat.quota import DAY_MS, HistoryQuota
from gateway.chat.redis_broker import RedisBroker
from tests.hubs import RunningHubs

Make = Callable[..., "asyncio.Future[Hub]"]



def user(name: str) -> dict[str, str]:
    return {"id": f"idp:{name}", "name": name.title()}


def frames(member: Member) -> list[dict[str, Any]]:
    taken = [json.loads(f) for f in member.outbox.queued()]
    member.outbox.discard_queued()
    return taken


async def wait_for(member: Member, kind: str, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Frames of `kind` arriving (through Redis) within `timeout`; other frames are dropped."""
    got: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < count:
        got += [f for f in frames(member) if f["type"] == kind]
        if len(got) >= count:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {len(got)} {kind!r} frames of {count}")
        await asyncio.sleep(0.02)
    return got


@pytest.fixture
def hubs(redis_url: str, redis_prefix: str, running_hubs: RunningHubs) -> Callable[..., Any]:
    async def make(**options: Any) -> Hub:
        limits = HubLimits(message_rate=1000, message_burst=1000, presence_settle=0)  # presence at once
        broker = RedisBroker(redis_url, redis_prefix, options.pop("history_limit", 10_000),
                             options.pop("presence_ttl", 30.0), clock=options.pop("clock", time.time),
                             quota=options.pop("quota", None))
        return await running_hubs.start(broker, limits)

    return make


@pytest.mark.anyio
async def test_a_message_on_one_instance_reaches_the_other_in_order(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    alice, bob = a.member("r", user("alice")), b.member("r", user("bob"))
    await a.join(alice)
    await b.join(bob)
    for i in range(10):
        await a.post(alice, f"m{i}", f"c{i}")
    received = await wait_for(bob, "message", 10)
    assert [m["text"] for m in received] == [f"m{i}" for i in range(10)]
    ids = [parse_id(m["id"]) for m in received]
    assert ids == sorted(ids)
    acks = [f for f in frames(alice) if f["type"] == "ack"]
    assert [a["id"] for a in acks] == [m["id"] for m in received]


@pytest.mark.anyio
async def test_a_late_joiner_on_b_gets_history_written_via_a(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    alice = a.member("r", user("alice"))
    await a.join(alice)
    await a.post(alice, "written on A", None)
    late = b.member("r", user("late"))
    await b.join(late)
    history = next(f for f in frames(late) if f["type"] == "history")
    assert [m["text"] for m in history["messages"]] == ["written on A"]


@pytest.mark.anyio
async def test_a_resend_through_another_instance_is_stored_once(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    on_a, on_b = a.member("r", user("alice")), b.member("r", user("alice"))
    await a.join(on_a)
    await b.join(on_b)
    await a.post(on_a, "only once", "same-id")
    first = next(f for f in await wait_for(on_a, "ack"))
    await b.post(on_b, "only once", "same-id")  # A died before acking; the client resent through B
    second = (await wait_for(on_b, "ack"))[0]
    assert second["id"] == first["id"]
    page = await a.broker.page("r", None, 50)
    assert [m["text"] for m in page.messages] == ["only once"]


@pytest.mark.anyio
async def test_presence_spans_instances_and_two_tabs_count_once(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    watcher = a.member("r", user("watcher"))
    await a.join(watcher)
    frames(watcher)
    tab1, tab2 = b.member("r", user("ann")), a.member("r", user("ann"))
    await b.join(tab1)
    await a.join(tab2)
    joins = await wait_for(watcher, "join")
    assert [j["user"]["name"] for j in joins] == ["Ann"]
    presence = next(f for f in frames(tab2) if f["type"] == "presence")
    assert sorted(u["name"] for u in presence["users"]) == ["Ann", "Watcher"]
    await b.leave(tab1)
    await asyncio.sleep(0.3)
    assert [f for f in frames(watcher) if f["type"] == "leave"] == []
    await a.leave(tab2)
    assert [f["user"]["name"] for f in await wait_for(watcher, "leave")] == ["Ann"]


@pytest.mark.anyio
async def test_a_crashed_instances_users_vanish_from_presence(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(presence_ttl=3.0), await hubs(presence_ttl=3.0)
    watcher = a.member("r", user("watcher"))
    await a.join(watcher)
    ghost = b.member("r", user("ghost"))
    await b.join(ghost)
    await wait_for(watcher, "join")
    for task in b.broker._tasks:  # B dies: no heartbeat, no goodbye
        task.cancel()
    b.broker.presence._mine.clear()
    leaves = await wait_for(watcher, "leave", timeout=8.0)
    assert leaves[0]["user"]["name"] == "Ghost"
    assert [u["name"] for u in await a.broker.present("r")] == ["Watcher"]


@pytest.mark.anyio
async def test_kick_closes_the_users_sockets_on_every_instance(hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    on_a, on_b, other = a.member("r", user("bye")), b.member("s", user("bye")), b.member("r", user("stay"))
    for hub, member in ((a, on_a), (b, on_b), (b, other)):
        await hub.join(member)
    await a.disconnect_user("idp:bye", 4401, "signed out")
    for _ in range(100):
        if on_a.outbox.close_code and on_b.outbox.close_code:
            break
        await asyncio.sleep(0.02)
    assert on_a.outbox.close_code == on_b.outbox.close_code == 4401
    assert other.outbox.close_code is None


@pytest.mark.anyio
async def test_history_is_bounded_and_resume_reports_truncation(hubs: Callable[..., Any]) -> None:
    a = await hubs(history_limit=100)
    writer = a.member("r", user("w"))
    await a.join(writer)
    ids = []
    for i in range(400):
        stored = await a.broker.publish("r", writer.user, f"m{i}", None)
        ids.append(stored.message["id"])
    kept = await a.broker.page("r", ids[0], 10_000)
    assert kept.truncated is True and 100 <= len(kept.messages) < 400  # MAXLEN ~ trims in whole nodes
    recent = await a.broker.page("r", ids[-3], 10_000)
    assert [m["text"] for m in recent.messages] == ["m398", "m399"] and recent.truncated is False


@pytest.mark.anyio
async def test_redis_lost_means_store_unavailable_then_recovery(redis_prefix: str) -> None:
    from tests.redis_support import redis_server
    from tests.redis_support import wait_for as wait_for_redis

    with redis_server() as (url, process, argv):
        hub = Hub(RedisBroker(url, redis_prefix), HubLimits(message_rate=1000, message_burst=1000))
        await hub.start()
        try:
            member = hub.member("r", user("a"))
            await hub.join(member)
            frames(member)
            process.terminate()
            process.wait(10)
            await hub.post(member, "lost?", "c1")
            sent = frames(member)
            assert [f["type"] for f in sent] == ["error"] and sent[0]["code"] == "store_unavailable"  # no ack
            assert await hub.broker.healthy() is False
            import subprocess

            again = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for_redis(url)
                await hub.post(member, "after recovery", "c2")  # no restart of the gateway needed
                assert [f["type"] for f in await wait_for(member, "ack")] == ["ack"]
                assert await hub.broker.healthy() is True
            finally:
                again.terminate()
                again.wait(10)
        finally:
            await hub.stop()


@pytest.mark.anyio
async def test_start_fails_clearly_without_redis() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable, match="GATEWAY_BROKER_URL"):
        await broker.start(lambda event: None)
    await broker.redis.aclose()
    await broker._reader.aclose()


async def post(hub: Hub, room: str, who: str, text: str, client_id: str) -> dict[str, Any]:
    """Post once, in a room joined for it; the ack or the error."""
    member = hub.member(room, user(who))
    await hub.join(member)
    frames(member)
    await hub.post(member, text, client_id)
    answer = [f for f in frames(member) if f["type"] in ("ack", "error")]
    await hub.leave(member)
    return answer[0]


@pytest.mark.anyio
async def test_history_limits_hold_across_instances(hubs: Callable[..., Any]) -> None:
    quota = HistoryQuota(max_rooms=3, rooms_per_user=2)
    a, b = await hubs(quota=quota), await hubs(quota=quota)
    assert (await post(a, "r1", "alice", "x", "c1"))["type"] == "ack"
    assert (await post(b, "r2", "alice", "x", "c2"))["type"] == "ack"
    refused = await post(a, "r3", "alice", "x", "c3")
    assert refused["code"] == "history_full"
    assert refused["message"] == "you started 2 rooms in the last 24 hours: post in a room that exists, or wait"
    assert (await post(b, "r1", "alice", "still here", "c4"))["type"] == "ack"
    assert (await post(b, "r3", "bob", "x", "c5"))["type"] == "ack"  # another user is not held back
    full = await post(a, "r4", "carol", "x", "c6")
    assert full["code"] == "history_full" and full["message"] == (
        "the chat keeps at most 3 rooms: post in one that exists")
    assert (await a.broker.page("r4", None, 10)).messages == []
    assert [m["user"]["id"] for m in (await a.broker.page("r3", None, 10)).messages] == ["idp:bob"]


@pytest.mark.anyio
async def test_a_resend_is_never_refused_by_the_history_limits(hubs: Callable[..., Any]) -> None:
    a = await hubs(quota=HistoryQuota(max_rooms=1, rooms_per_user=1))
    first = await post(a, "r1", "alice", "hello", "c1")
    assert (await post(a, "r2", "alice", "x", "c2"))["code"] == "history_full"
    again = await post(a, "r1", "alice", "hello", "c1")
    assert again == {"type": "ack", "client_id": "c1", "id": first["id"]}
    assert len((await a.broker.page("r1", None, 10)).messages) == 1


@pytest.mark.anyio
async def test_rooms_per_user_count_the_last_24_hours_only(hubs: Callable[..., Any]) -> None:
    now = [time.time()]
    a = await hubs(quota=HistoryQuota(rooms_per_user=1), clock=lambda: now[0])
    assert (await post(a, "r1", "alice", "x", "c1"))["type"] == "ack"
    now[0] += DAY_MS / 1000 - 1
    assert (await post(a, "r2", "alice", "x", "c2"))["code"] == "history_full"
    now[0] += 2
    assert (await post(a, "r2", "alice", "x", "c3"))["type"] == "ack"
    assert (await post(a, "r3", "alice", "x", "c4"))["code"] == "history_full"
