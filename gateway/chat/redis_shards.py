"""Reading rooms from a Redis Cluster: sharded pub/sub for news, pipelined stream reads for the messages.

A cluster refuses one XREAD over streams of different slots, and each room is its own slot (its hash tag),
so the one-Redis XREAD BLOCK loop cannot carry over. Instead:
- every room with local sockets has its sharded channel (`SSUBSCRIBE <prefix>events:{room}`) on the room's
  shard; the publish script SPUBLISHes each new id there, and join/leave travel there too. Control notices
  go through one more sharded channel (`<prefix>events`) that every instance listens to.
- a new id marks the room; the rooms marked are read with one pipeline of XREAD (no BLOCK) from their
  positions, which redis-py's ClusterPipeline sends as one round trip to each shard. Every room is read
  that way at least once a second too, so a news item lost with a connection costs a second, never a message.
- any error of the subscriptions (a shard failing over), and any refresh of the client's slot map, closes
  them all; after a pause they are made again on whichever primaries the cluster client now knows, and
  every room is read from its position.
Routing, MOVED/ASK and topology refreshes are redis-py's (`RedisCluster`, `ClusterPubSub`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterPubSub, RedisCluster

from gateway.chat.redis_keys import RoomKeys
from gateway.redis_connect import REDIS_ERRORS, decoded

log = logging.getLogger("gateway.redis")
FULL_READ_EVERY = 1.0  # seconds
BATCH = 500  # entries per room and read


class _Subscriptions(ClusterPubSub):
    """redis-py's ClusterPubSub moves shard subscriptions itself after a slot-map refresh, closing the
    per-node pub/subs that lost their channels while a listener here may be reading one: the listener's
    retry then reconnects a connection no pub/sub owns any more (left open on a node the client dropped,
    or read by two tasks). The reader does its own failover instead (close all, subscribe again), and a
    refresh is reported to it."""

    def __init__(self, cluster: RedisCluster, on_refresh: Callable[[], None]) -> None:
        super().__init__(cluster)
        self._on_refresh = on_refresh

    async def on_slots_changed(self) -> None:
        if self.shard_channels:
            self._on_refresh()


class ShardedReader:
    def __init__(self, cluster: Any, keys: RoomKeys, positions: dict[str, str],
                 on_entry: Callable[[str, Any, Any], None], on_event: Callable[[dict[str, Any]], None]) -> None:
        self.cluster = cluster
        self.keys = keys
        self.positions = positions  # stream key -> last id delivered (shared with the broker)
        self._on_entry = on_entry
        self._on_event = on_event
        self.rooms: set[str] = set()
        self._marked: set[str] = set()
        self._woken = asyncio.Event()
        self._broken = asyncio.Event()
        self._pubsub: Any = None
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._last_full = 0.0

    async def start(self) -> list[asyncio.Task[None]]:
        """Subscribed to the control channel before this returns (nothing announced later is missed)."""
        await self._subscribe()
        return [asyncio.create_task(self._read(), name="redis-shard-reads"),
                asyncio.create_task(self._keep_subscribed(), name="redis-shard-subscriptions")]

    async def stop(self) -> None:
        await self._close()

    async def watch(self, room: str) -> None:
        self.rooms.add(room)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await pubsub.ssubscribe(self.keys.room_events(room))
            except REDIS_ERRORS as exc:
                self._fail(exc)
            if pubsub is self._pubsub:
                self._listen_all()
            else:  # closed meanwhile (its next subscription has the room): close what this one just opened
                await self._close_quietly(pubsub)
        self.mark(room)  # what came before the subscription took hold

    async def unwatch(self, room: str) -> None:
        self.rooms.discard(room)
        if self._pubsub is not None:
            try:
                await self._pubsub.sunsubscribe(self.keys.room_events(room))
            except REDIS_ERRORS as exc:
                self._fail(exc)

    def mark(self, room: str) -> None:
        self._marked.add(room)
        self._woken.set()

    # --- subscriptions ----------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        pubsub = _Subscriptions(self.cluster, self._refreshed)
        self._pubsub = pubsub
        await pubsub.ssubscribe(self.keys.events, *(self.keys.room_events(room) for room in sorted(self.rooms)))
        self._listen_all()

    def _listen_all(self) -> None:
        """One listener per shard holding our channels (redis-py keeps one pub/sub connection per node)."""
        for name in list(self._pubsub.node_pubsub_mapping):
            if name not in self._listeners or self._listeners[name].done():
                self._listeners[name] = asyncio.create_task(self._listen(name), name=f"redis-shard-{name}")

    async def _listen(self, name: str) -> None:
        pubsub = self._pubsub
        while pubsub is self._pubsub:
            node = pubsub.node_pubsub_mapping.get(name)
            if node is None:
                return
            try:
                message = await node.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except REDIS_ERRORS as exc:
                self._fail(exc)
                return
            if message and message.get("type") in ("smessage", b"smessage"):
                self._heard(decoded(message["channel"]), message["data"])

    def _heard(self, channel: str, data: Any) -> None:
        text = decoded(data)
        if not text.startswith("{"):  # a new id in the room
            self.mark(channel.removeprefix(f"{self.keys.prefix}events:")[1:-1])
            return
        try:
            event = json.loads(text)
        except ValueError:
            return
        if isinstance(event, dict):
            self._on_event(event)

    def _fail(self, exc: BaseException) -> None:
        if not self._broken.is_set():
            log.warning("Redis Cluster subscription lost (%s); subscribing again", type(exc).__name__)
        self._broken.set()

    def _refreshed(self) -> None:
        if not self._broken.is_set():
            log.info("Redis Cluster slot map refreshed; subscribing again on the current primaries")
        self._broken.set()

    async def _close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        listeners, self._listeners = list(self._listeners.values()), {}
        for task in listeners:
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*(t for t in listeners if t is not asyncio.current_task()), return_exceptions=True)
        if pubsub is not None:
            await self._close_quietly(pubsub)

    @staticmethod
    async def _close_quietly(pubsub: ClusterPubSub) -> None:
        try:
            await pubsub.aclose()
        except REDIS_ERRORS:
            pass

    async def _keep_subscribed(self) -> None:
        failures = 0
        while True:
            await self._broken.wait()
            await self._close()
            failures += 1
            await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
            self._broken.clear()
            try:
                await self._subscribe()
                failures = 0
                self.mark_all()
            except REDIS_ERRORS as exc:
                self._fail(exc)

    def mark_all(self) -> None:
        self._marked |= self.rooms
        self._woken.set()

    # --- stream reads ------------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._woken.wait(), FULL_READ_EVERY)
            except TimeoutError:
                pass
            self._woken.clear()
            if time.monotonic() - self._last_full >= FULL_READ_EVERY:
                self._last_full = time.monotonic()
                self._marked |= self.rooms
            rooms, self._marked = sorted(self._marked & self.rooms), set()
            if rooms:
                await self._read_rooms(rooms)

    async def _read_rooms(self, rooms: list[str]) -> None:
        pipe = self.cluster.pipeline(transaction=False)
        asked = []
        for room in rooms:
            stream = self.keys.stream(room)
            if stream in self.positions:
                pipe.xread({stream: self.positions[stream]}, count=BATCH)
                asked.append(room)
        try:
            answers = await pipe.execute(raise_on_error=False)
        except REDIS_ERRORS as exc:  # the whole pipeline failed: read them all again shortly
            log.warning("Redis Cluster stream read failed (%s); retrying", type(exc).__name__)
            self._marked |= set(asked)
            await asyncio.sleep(0.2)
            self._woken.set()
            return
        failed = False
        for room, answer in zip(asked, answers, strict=True):
            if isinstance(answer, Exception):  # that room's shard is failing over: again shortly
                self._marked.add(room)
                failed = True
                continue
            for stream_key, entries in answer or []:
                for entry_id, fields in entries:
                    self._on_entry(decoded(stream_key), entry_id, fields)
                if len(entries) >= BATCH:
                    self._marked.add(room)
        if failed:
            await asyncio.sleep(0.2)
        if self._marked:
            self._woken.set()
