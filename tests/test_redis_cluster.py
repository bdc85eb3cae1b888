"""Two hubs (two instances) over a real Redis Cluster of three primaries with a replica each: 30 rooms spread
over the shards, delivery across instances in order, presence, history and resume on every shard; then a
primary SIGKILLed under load with GATEWAY_REDIS_MIN_REPLICAS=1: no acked message lost or stored twice."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.chat.hub import Hub, HubLimits, Member
from gateway.chat.redis_broker import RedisBroker
from gateway.chat.redis_keys import RoomKeys
from gateway.chat.redis_replicas import ReplicatedWrites
from gateway.redis_connect import close, connect
from tests.hubs import RunningHubs
from tests.redis_topologies import ClusterSet, client, cluster_set, until
from tests.test_hub import sent
from tests.test_redis_broker import frames, user, wait_for

PREFIX = "gateway-cluster-test:"
ROOMS = [f"room-{i}" for i in range(30)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with cluster_set() as made:
        yield made


@pytest.fixture
def hubs(cluster: ClusterSet, running_hubs: RunningHubs) -> Callable[..., Any]:
    async def make(**options: Any) -> Hub:
        return await running_hubs.start(RedisBroker(cluster.url, options.pop("prefix", PREFIX), **options),
                                        HubLimits(message_rate=1000, message_burst=1000, presence_settle=0))

    return make


def owner(cluster: ClusterSet, room: str) -> int:
    slot = key_slot(RoomKeys(PREFIX, tagged=True).stream(room).encode())
    return next(port for port, (first, last) in cluster.primaries().items() if first <= slot <= last)


@pytest.mark.anyio
async def test_thirty_rooms_spread_over_the_shards_and_work_on_every_one(cluster: ClusterSet,
                                                                         hubs: Callable[..., Any]) -> None:
    a, b = await hubs(), await hubs()
    shards: dict[int, list[str]] = {}
    for room in ROOMS:
        shards.setdefault(owner(cluster, room), []).append(room)
    assert sorted(len(rooms) for rooms in shards.values())[0] >= 5 and len(shards) == 3, shards

    on_a = {room: a.member(room, user("alice")) for room in ROOMS}
    on_b = {room: b.member(room, user("bob")) for room in ROOMS}
    for room in ROOMS:
        await a.join(on_a[room])
        await b.join(on_b[room])
    for room in ROOMS:  # presence across instances, on every shard: Alice hears Bob arrive
        names: list[str] = []
        while "Bob" not in names:
            names += [j["user"]["name"] for j in await wait_for(on_a[room], "join")]
        assert sorted(u["name"] for u in await a.broker.present(room)) == ["Alice", "Bob"]

    async def talk(room: str) -> None:
        for i in range(5):
            await a.post(on_a[room], f"{room} says {i}", f"{room}-{i}")

    await asyncio.gather(*(talk(room) for room in ROOMS))
    for room in ROOMS:
        received = await wait_for(on_b[room], "message", 5)
        assert [m["text"] for m in received] == [f"{room} says {i}" for i in range(5)]  # in order
        acks = [f for f in frames(on_a[room]) if f["type"] == "ack"]
        assert [ack["id"] for ack in acks] == [m["id"] for m in received]
    for port, rooms in shards.items():  # each room's stream really is on its shard (a plain client there)
        direct = client(port)
        assert all(direct.exists(RoomKeys(PREFIX, tagged=True).stream(room)) for room in rooms)
        direct.close()

    for room in ROOMS:  # history and resume on every shard, read through the other instance
        late = b.member(room, user(f"late-{room}"))  # one user each: resumes are limited per user
        await b.join(late)
        history = next(f for f in frames(late) if f["type"] == "history")
        assert [m["text"] for m in history["messages"]] == [f"{room} says {i}" for i in range(5)]
        await b.resume(late, history["messages"][1]["id"])
        resumed = (await sent(late, "history"))[0]  # the backlog is written as the socket drains
        assert [m["text"] for m in resumed["messages"]] == [f"{room} says {i}" for i in range(2, 5)]
        await b.leave(late)
    frames(on_a[ROOMS[0]])
    await b.leave(on_b[ROOMS[0]])
    left: list[str] = []
    while "Bob" not in left:
        left += [f["user"]["name"] for f in await wait_for(on_a[ROOMS[0]], "leave")]


@pytest.mark.anyio
async def test_a_resend_is_stored_once_and_limits_hold_across_shards(hubs: Callable[..., Any]) -> None:
    from gateway.chat.quota import HistoryQuota
    from tests.test_redis_broker import post

    quota = HistoryQuota(max_rooms=1000, rooms_per_user=2)
    a, b = await hubs(prefix=PREFIX + "limits:", quota=quota), await hubs(prefix=PREFIX + "limits:", quota=quota)
    first = await post(a, "lim-1", "carol", "once", "same")
    again = await post(b, "lim-1", "carol", "once", "same")
    assert again == {"type": "ack", "client_id": "same", "id": first["id"]}
    assert len((await b.broker.page("lim-1", None, 10)).messages) == 1
    assert (await post(b, "lim-2", "carol", "x", "c2"))["type"] == "ack"
    assert (await post(a, "lim-3", "carol", "x", "c3"))["code"] == "history_full"


async def drain(member: Member) -> list[dict[str, Any]]:
    taken = [json.loads(f) for f in member.outbox.queued()]
    member.outbox.discard_queued()
    return taken


@pytest.mark.anyio
async def test_a_primary_killed_under_load_loses_no_acked_message(cluster: ClusterSet,
                                                                  hubs: Callable[..., Any]) -> None:
    prefix = PREFIX + "failover:"
    a = await hubs(prefix=prefix, min_replicas=1, replica_timeout=0.5)
    b = await hubs(prefix=prefix, min_replicas=1, replica_timeout=0.5)
    victim = owner(cluster, ROOMS[0])
    rooms = ([r for r in ROOMS if owner(cluster, r) == victim][:4]
             + [r for r in ROOMS if owner(cluster, r) != victim][:4])
    acked: dict[str, str] = {}  # client_id -> id
    refused: dict[str, list[float]] = {room: [] for room in ROOMS}  # when each store_unavailable came
    ack_times: dict[str, list[float]] = {room: [] for room in ROOMS}
    per_room = 40
    killed = asyncio.Event()
    promoted: list[float] = []
    kill_time: list[float] = []
    walls: list[tuple[str, float]] = []
    readers = {room: b.member(room, user("reader")) for room in rooms}
    for member in readers.values():
        await b.join(member)

    async def write(room: str) -> None:
        member = a.member(room, user("writer"))
        await a.join(member)
        await drain(member)
        for i in range(per_room):
            client_id = f"{room}-{i}"
            while client_id not in acked:
                await a.post(member, f"{room} {i}", client_id)
                for frame in await drain(member):
                    if frame["type"] == "ack":
                        acked[frame["client_id"]] = frame["id"]
                        ack_times[room].append(time.monotonic())
                    elif frame["type"] == "error":
                        assert frame["code"] == "store_unavailable", frame
                        refused[room].append(time.monotonic())
                if client_id not in acked:
                    await asyncio.sleep(0.1)  # the page resends the same client_id
            if room == rooms[0] and i == per_room // 4:
                cluster.servers.kill(victim)
                kill_time.append(time.monotonic())
                walls.append(("killed", time.time()))
                killed.set()
            await asyncio.sleep(0.02)

    async def bring_back() -> None:  # a supervisor restarts the dead node once a replica took over
        await killed.wait()
        await asyncio.to_thread(until, lambda: victim not in cluster.primaries() and len(cluster.primaries()) == 3,
                                "a replica promoted", 30)
        promoted.append(time.monotonic())
        process = cluster.servers.processes[victim]
        cluster.servers.start(list(map(str, process.args)), victim)  # type: ignore[arg-type]
        walls.append(("restarted", time.time()))

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(bring_back(), *(write(room) for room in rooms)), 120)
    assert len(acked) == per_room * len(rooms)
    for hub in (a, b):  # every acked message is stored exactly once, read through either instance
        for room in rooms:
            page = await hub.broker.page(room, None, 1000)
            stored = {m["client_id"]: m["id"] for m in page.messages}
            assert len(stored) == len(page.messages), f"{room}: a message stored twice"
            assert stored == {k: v for k, v in acked.items() if k.startswith(f"{room}-")}, f"{room}: lost {walls}"
    for room, member in readers.items():  # live delivery came back on the failed shard too (within seconds)
        got: list[dict[str, Any]] = []
        wanted = {k for k in acked if k.startswith(f"{room}-")}
        deadline = time.monotonic() + 10
        while {m["client_id"] for m in got} != wanted and time.monotonic() < deadline:
            got += [f for f in await drain(member) if f["type"] == "message"]
            await asyncio.sleep(0.05)
        ids = [tuple(map(int, m["id"].split("-"))) for m in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {m["client_id"] for m in got} == wanted, room
    on_victim = sorted(t for room in rooms[:4] for t in refused[room])
    elsewhere = sum(len(refused[room]) for room in rooms[4:])
    window = (on_victim[-1] - on_victim[0]) if on_victim else 0.0
    acks = sorted(t for room in rooms[:4] for t in ack_times[room])
    stall = max(b - a for a, b in itertools.pairwise(acks))
    print(f"\ncluster failover: {len(acked)} acked, 0 lost, 0 twice; the killed shard's rooms went {stall:.1f} s "
          f"without an ack and refused {len(on_victim)} sends over {window:.1f} s (replica promoted "
          f"{promoted[0] - kill_time[0]:.1f} s after the kill); "
          f"other shards refused {elsewhere}; run {time.monotonic() - started:.1f} s")


@pytest.mark.anyio
async def test_logouts_and_replayed_jtis_are_shared_across_the_shards(hubs: Callable[..., Any]) -> None:
    from gateway.cache import DenyList
    from gateway.shared import RedisShared

    prefix = PREFIX + "shared:"
    a, b = await hubs(prefix=prefix), await hubs(prefix=prefix)
    heard: list[dict[str, Any]] = []
    b.handlers["_deny"] = heard.append  # control notices travel on their own sharded channel
    on_a = RedisShared(a.broker.redis, prefix, a.broker.announce)
    until_then = time.time() + 60
    for i in range(30):  # keys land on every shard; a later instance must find them all
        await on_a.deny(f"token-{i}", until_then)
    loaded = DenyList()
    await RedisShared(b.broker.redis, prefix, b.broker.announce).load_denied(loaded)
    assert len(loaded) == 30
    for _ in range(100):
        if len(heard) == 30:
            break
        await asyncio.sleep(0.02)
    assert sorted(e["key"] for e in heard) == sorted(f"token-{i}" for i in range(30))
    assert await on_a.claim("jti-1", until_then) is True
    assert await RedisShared(b.broker.redis, prefix, b.broker.announce).claim("jti-1", until_then) is False


@pytest.mark.anyio
async def test_edits_and_deletes_work_on_every_shard_and_reach_the_other_instance(
        cluster: ClusterSet, hubs: Callable[..., Any]) -> None:
    """The edit script touches the room's stream and its two change keys: one slot, whatever the shard."""
    a, b = await hubs(prefix=PREFIX + "edits:"), await hubs(prefix=PREFIX + "edits:")
    rooms = [f"edit-{i}" for i in range(9)]
    keys = RoomKeys(PREFIX + "edits:", tagged=True)
    for room in rooms:
        assert len({key_slot(k.encode()) for k in (keys.stream(room), keys.changed(room), keys.changes(room))}) == 1
    for room in rooms:
        ann, bob = a.member(room, user("ann")), b.member(room, user("bob"))
        await a.join(ann)
        await b.join(bob)
        await a.post(ann, "first", "c1")
        message = (await wait_for(bob, "message"))[0]
        await a.change(ann, message["id"], "edited")
        assert (await wait_for(bob, "edit"))[0]["text"] == "edited"
        await a.change(ann, message["id"], None)
        assert (await wait_for(bob, "delete"))[0]["id"] == message["id"]
        assert (await b.broker.page(room, None, 5)).messages[0]["deleted"] is True
        assert [e["type"] for e in await b.broker.changes_since(room, "0-0", 10)] == ["edit", "delete"]
    assert len({owner(cluster, room) for room in rooms}) > 1  # the rooms were on more than one shard


@pytest.mark.anyio
async def test_a_write_racing_a_disconnect_fails_as_a_connection_error(cluster: ClusterSet) -> None:
    """redis-py/redis-py#4287: a connection closed by another task between the check and the write raised an
    AttributeError, which neither the cluster client's retries nor the gateway's handlers expect."""
    redis = connect(cluster.url, socket_timeout=2)
    try:
        await redis.ping(target_nodes=redis.PRIMARIES)
        node = redis.get_primaries()[0]
        connection = node.acquire_connection()
        await connection.connect()
        sent, _ = await asyncio.gather(connection.send_packed_command(connection.pack_command("PING")),
                                       connection.disconnect(nowait=True), return_exceptions=True)
        node.release(connection)
        assert isinstance(sent, RedisConnectionError), repr(sent)
        assert await redis.ping(target_nodes=node)  # and the pool goes on with a fresh connection
    finally:
        await close(redis)


@pytest.mark.anyio
async def test_closing_a_cluster_client_after_a_node_error_closes_every_connection(cluster: ClusterSet) -> None:
    """After a ConnectionError on a node the client waits to re-read the slots; redis-py 8.1's aclose() then
    closed nothing, and every connection was left to the garbage collector (ResourceWarning)."""
    redis = connect(cluster.url, socket_timeout=2)
    await redis.ping(target_nodes=redis.PRIMARIES)
    node = redis.get_primaries()[0]
    ours = await redis.execute_command("CLIENT ID", target_nodes=node)
    direct = client(node.port)
    direct.execute_command("CLIENT KILL ID", ours)
    direct.close()
    with pytest.raises(RedisConnectionError):  # a command aimed at one node is not retried
        await redis.ping(target_nodes=node)
    nodes = [*redis.nodes_manager.nodes_cache.values(), *redis.nodes_manager.startup_nodes.values()]
    assert any(c.is_connected for n in nodes for c in n._connections)  # the other primaries' connections
    await close(redis)
    assert [c for n in nodes for c in n._connections if c.is_connected] == []


@pytest.mark.anyio
async def test_a_node_dropped_from_the_map_under_a_replicated_write_keeps_no_connection(cluster: ClusterSet) -> None:
    """A failover replaces the client's node objects; a write aimed at the one it had picked opened a connection
    on a node nobody would close (the 4 writers of the failover test left 4 sockets to the garbage collector)."""
    redis = connect(cluster.url, socket_timeout=2)
    try:
        writes = ReplicatedWrites(redis, min_replicas=1, timeout=1.0)
        script = redis.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
        key = PREFIX + "{dropped}:key"
        await redis.initialize()
        picked = redis.get_node_from_key(key)
        redis.nodes_manager.nodes_cache[picked.name] = ClusterNode(picked.host, picked.port, picked.server_type,
                                                                   **redis.connection_kwargs)  # as a refresh does
        assert await writes.run(script, [key], ["v"]) in (b"OK", "OK")
        assert picked._connections and not any(c.is_connected for c in picked._connections)
    finally:
        await close(redis)



@pytest.mark.anyio
async def test_closing_a_cluster_client_closes_what_nodes_dropped_from_its_map_opened(cluster: ClusterSet) -> None:
    """A pipeline under way on a node a failover replaced (the stream reads', the writes') opens its
    connection on the old node object, which the client's aclose() no longer reaches."""
    redis = connect(cluster.url, socket_timeout=2)
    await redis.ping(target_nodes=redis.PRIMARIES)
    old = redis.get_primaries()[0]
    redis.nodes_manager.nodes_cache[old.name] = ClusterNode(old.host, old.port, old.server_type,
                                                            **redis.connection_kwargs)  # as a refresh does
    stray = old.acquire_connection()
    await stray.connect()
    old.release(stray)
    await close(redis)
    assert not stray.is_connected


@pytest.mark.anyio
async def test_a_slot_map_refresh_makes_the_reader_subscribe_again_itself(hubs: Callable[..., Any]) -> None:
    """redis-py's ClusterPubSub would move the channels itself after a refresh, closing per-node pub/subs under
    the reader's listeners (whose retries then reconnected connections nobody owned: the failover test's
    leaked pub/sub sockets). The reader is told instead, and subscribes again on the current primaries."""
    a, b = await hubs(), await hubs()
    alice, bob = a.member("refresh", user("alice")), b.member("refresh", user("bob"))
    await a.join(alice)
    reader = a.broker._shards
    before = reader._pubsub
    await a.broker.redis.nodes_manager.initialize()  # what a failover's refresh runs
    assert not before._reconcile_tasks
    deadline = time.monotonic() + 5
    while reader._pubsub is before or reader._pubsub is None or not reader._listeners:
        assert time.monotonic() < deadline, "the reader did not subscribe again"
        await asyncio.sleep(0.02)
    assert before.node_pubsub_mapping == {}  # the old subscriptions are closed, not left to redis-py
    await b.join(bob)
    await b.post(bob, "after the refresh", "r1")
    assert [m["text"] for m in await wait_for(alice, "message")] == ["after the refresh"]
