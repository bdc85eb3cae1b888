"""The Redis broker: several gateway instances share rooms, history, presence and control notices.

- One Stream per room (`<prefix>room:<name>`): XADD with MAXLEN ~ keeps history bounded; stream ids are
  the message ids. One XREAD BLOCK loop per instance fans out to local sockets; XRANGE serves history.
- A resend of (user, client_id) is stored once: the dedupe key is set next to the XADD in one Lua script.
- Presence: a sorted set per room of "<user id> <connection>" scored by expiry, refreshed by heartbeats;
  entries of a crashed instance expire and whichever instance sweeps them announces the `leave`
  (gateway.chat.redis_presence).
- join/leave and control notices (close a user's sockets) travel over pub/sub.
- GATEWAY_BROKER_URL picks one Redis, the primary Sentinel names, or a Cluster (gateway.redis_connect);
  in a Cluster keys carry the room as hash tag (gateway.chat.redis_keys) and rooms are read shard by shard
  (gateway.chat.redis_shards). GATEWAY_REDIS_MIN_REPLICAS holds acks until replicas have the message
  (gateway.chat.redis_replicas).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from gateway.chat import redis_edits, redis_rooms
from gateway.chat.broker import Deliver, Event
from gateway.chat.edits import Change
from gateway.chat.frames import encode
from gateway.chat.history import Page, Stored, StoreUnavailable, TextPage, parse_id
from gateway.chat.quota import HistoryQuota
from gateway.chat.redis_keys import RoomKeys
from gateway.chat.redis_presence import RedisPresence
from gateway.chat.redis_replicas import ReplicatedWrites
from gateway.chat.redis_scripts import CLAIM_ROOM, PUBLISH, PUBLISH_IN_ROOM
from gateway.chat.redis_shards import ShardedReader
from gateway.chat.redis_streams import StreamReader
from gateway.chat.rooms import RoomSummary
from gateway.redis_connect import REDIS_ERRORS, close, connect, decoded
from gateway.redis_url import parse_redis_url

log = logging.getLogger("gateway.redis")


class RedisBroker:
    def __init__(self, url: str, prefix: str = "gateway:", history_limit: int = 10_000,
                 presence_ttl: float = 30.0, dedupe_ttl: int = 86_400, block_ms: int = 500,
                 clock: Callable[[], float] = time.time, quota: HistoryQuota | None = None,
                 min_replicas: int = 0, replica_timeout: float = 1.0) -> None:
        self.quota = quota or HistoryQuota()
        self.url = url
        self.prefix = prefix
        self.history_limit = history_limit
        self.presence_ttl = presence_ttl
        self.dedupe_ttl = dedupe_ttl
        self.block_ms = block_ms
        self._clock = clock
        self.instance = uuid.uuid4().hex[:12]
        target = parse_redis_url(url)
        self.cluster = target.kind == "cluster"
        self.keys = RoomKeys(prefix, tagged=self.cluster)
        # redis-py's command types are unions of every reply shape; we read replies by hand, so Any.
        self.redis: Any = connect(target, socket_timeout=block_ms / 1000 + 5, health_check_interval=15)
        # One Redis or Sentinel: the blocking XREAD and the subscription get their own pool.
        self._reader: Any = self.redis if self.cluster else connect(target, socket_timeout=block_ms / 1000 + 5)
        self._deliver: Deliver = lambda event: None
        self._publish = self.redis.register_script(PUBLISH_IN_ROOM if self.cluster else PUBLISH)
        self._claim = self.redis.register_script(CLAIM_ROOM)
        self._writes = ReplicatedWrites(self.redis, min_replicas, replica_timeout)
        self._claimed: set[str] = set()  # cluster: rooms known to count against the history limits
        self.change_script = self.redis.register_script(redis_edits.CHANGE)
        self._positions: dict[str, str] = {}  # stream key -> last id delivered on this instance
        self._rooms: dict[str, int] = {}  # local sockets per room
        self.presence = RedisPresence(self.redis, self.keys, self.instance, presence_ttl, clock, self._announce)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.connected = False
        self._shards = ShardedReader(self.redis, self.keys, self._positions, self._entry, self._event)
        self._streams = StreamReader(self._reader, self.keys, self._rooms, self._positions, self._wake, block_ms,
                                     self._entry, self._event)

    # --- life -----------------------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        try:
            await self.redis.ping()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"cannot reach Redis at GATEWAY_BROKER_URL: {exc}") from None
        self.connected = True
        try:
            if self.cluster:
                self._tasks = await self._shards.start()
            else:
                self._tasks = await self._streams.start()
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"cannot subscribe at GATEWAY_BROKER_URL: {exc}") from None
        self._tasks.append(asyncio.create_task(self.presence.heartbeat(), name="redis-presence"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._shards.stop()
        for room, user, connection in self.presence.connections():
            try:
                await self.exit(room, user, connection)
            except StoreUnavailable:
                break
        await close(self.redis)
        if self._reader is not self.redis:
            await close(self._reader)

    async def healthy(self) -> bool:
        try:
            if self.cluster:  # every primary: a shard without one refuses its rooms' messages
                return bool(await self.redis.ping(target_nodes=self.redis.PRIMARIES))
            return bool(await self.redis.ping())
        except REDIS_ERRORS:
            return False

    # --- messages -------------------------------------------------------------------------------------

    def _message(self, room: str, entry_id: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
        body = json.loads(fields.get(b"m") or fields.get("m") or "{}")
        message_id = decoded(entry_id)
        message: dict[str, Any] = {"type": "message", "id": message_id, "room": room, "user": body["user"],
                                   "text": body["text"], "ts": int(message_id.split("-")[0])}
        if body.get("client_id") is not None:
            message["client_id"] = body["client_id"]
        return message

    async def publish(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        body = json.dumps({"user": user, "text": text, "client_id": client_id}, ensure_ascii=False)
        dedupe = self.keys.dedupe(room, user["id"], client_id)
        limits: list[Any] = [room, user["id"], int(self._clock() * 1000), self.quota.max_rooms,
                             self.quota.rooms_per_user]
        try:
            if self.cluster:  # the limits' keys live on their own shard: claim the room there first
                if room not in self._claimed:
                    self._refuse_over_limits(await self._claim(keys=[self.keys.rooms, self.keys.started(user["id"])],
                                                               args=limits))
                    self._claimed.add(room)  # rooms are never forgotten, so this stays true
                keys, args = [self.keys.stream(room), dedupe], [self.keys.room_events(room)]
            else:
                keys, args = [self.keys.stream(room), dedupe, self.keys.rooms, self.keys.started(user["id"])], limits
            fresh, message_id = await self._writes.run(self._publish, keys, [
                self.history_limit, body, self.dedupe_ttl, "1" if client_id is not None else "0", *args])
            self._refuse_over_limits((fresh, message_id))
            message_id = decoded(message_id)
            if fresh:
                await redis_rooms.touch(self, room, int(message_id.split("-")[0]))
                return Stored({"type": "message", "id": message_id, "room": room, "user": user, "text": text,
                               "ts": int(message_id.split("-")[0]),
                               **({"client_id": client_id} if client_id is not None else {})}, duplicate=False)
            found = await self.redis.xrange(self.keys.stream(room), message_id, message_id)
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        if found:
            return Stored(self._message(room, *found[0]), duplicate=True)
        # The first copy was trimmed from the room already: answer with its id all the same.
        return Stored({"type": "message", "id": message_id, "room": room, "user": user, "text": text,
                       "ts": int(message_id.split("-")[0]), "client_id": client_id}, duplicate=True)

    def _refuse_over_limits(self, answer: list[Any] | tuple[Any, Any]) -> None:
        if int(answer[0]) < 0:
            refusal = (self.quota.too_many_rooms(self.quota.max_rooms) if int(answer[0]) == -1
                       else self.quota.too_many_for(self.quota.rooms_per_user))
            raise refusal or StoreUnavailable("history limits: unexpected answer")

    async def page(self, room: str, after: str | None, limit: int) -> Page:
        stream = self.keys.stream(room)
        try:
            if after is None:
                entries = await self.redis.xrevrange(stream, "+", "-", count=limit + 1)
                trimmed = await self._trimmed(stream)
                messages = [self._message(room, i, f) for i, f in reversed(entries[:limit])]
                return Page(await redis_edits.merged(self, room, messages), len(entries) > limit or trimmed is not None)
            start = parse_id(after)
            entries = await self.redis.xrange(stream, f"({after}", "+", count=limit + 1)
            trimmed = await self._trimmed(stream)
            messages = await redis_edits.merged(self, room, [self._message(room, i, f) for i, f in entries[:limit]])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        truncated = trimmed is not None and trimmed > start
        return Page(messages, truncated, more=len(entries) > limit)

    async def page_before(self, room: str, before: str, limit: int) -> Page:
        """Older messages (a `history {before}` frame): XREVRANGE from just below `before`."""
        parse_id(before)
        stream = self.keys.stream(room)
        try:
            entries = await self.redis.xrevrange(stream, f"({before}", "-", count=limit + 1)
            trimmed = await self._trimmed(stream)
            messages = await redis_edits.merged(self, room,
                                                [self._message(room, i, f) for i, f in reversed(entries[:limit])])
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return Page(messages, len(entries) > limit or trimmed is not None)

    async def change(self, room: str, change: Change) -> None:
        await redis_edits.change(self, room, change)

    async def changes_since(self, room: str, after: str, limit: int) -> list[Event]:
        return await redis_edits.changes_since(self, room, after, limit)

    async def mark_read(self, user_id: str, room: str, message_id: str) -> None:
        await redis_rooms.mark_read(self, user_id, room, message_id)

    async def rooms(self, user_id: str, name: str) -> list[RoomSummary]:
        return await redis_rooms.rooms(self, user_id, name)

    async def page_text(self, room: str, after: str, limit: int) -> TextPage:
        page = await self.page(room, after, limit)
        return TextPage([encode(message) for message in page.messages],
                        page.messages[-1]["id"] if page.messages else None, page.truncated, page.more,
                        [message["id"] for message in page.messages])

    async def _trimmed(self, stream: str) -> tuple[int, int] | None:
        """The first id still kept, when older entries were trimmed away; else None."""
        try:
            info = await self.redis.xinfo_stream(stream)
        except redis.ResponseError:  # no such stream yet
            return None
        if info["entries-added"] <= info["length"] or not info.get("first-entry"):
            return None
        return parse_id(decoded(info["first-entry"][0]))

    def _entry(self, key: str, entry_id: Any, fields: dict[Any, Any]) -> None:
        self._positions[key] = decoded(entry_id)
        try:
            self._deliver(self._message(self.keys.room_of(key), entry_id, fields))
        except (ValueError, KeyError, TypeError):
            log.warning("skipped a malformed entry in %s", key)

    def _event(self, event: Event) -> None:
        self._deliver(event)

    async def announce(self, event: Event) -> None:
        """Tell every instance (their hubs' `deliver`)."""
        await self._announce(event)

    async def _announce(self, event: Event) -> None:
        try:
            if self.cluster:  # sharded: a room's join/leave on its shard, control notices on one channel
                room = event.get("room") if event.get("type") in ("join", "leave") else None
                channel = self.keys.room_events(room) if isinstance(room, str) else self.keys.events
                await self.redis.spublish(channel, json.dumps(event, ensure_ascii=False))
                return
            await self.redis.publish(self.keys.events, json.dumps(event, ensure_ascii=False))
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    # --- presence (gateway.chat.redis_presence) ------------------------------------------------------

    async def enter(self, room: str, user: dict[str, str], connection: str,
                    listed: bool = True) -> list[dict[str, str]]:
        stream = self.keys.stream(room)
        if room not in self._rooms:
            # Deliver from the current end of the stream: whatever `page` returns next covers the rest.
            try:
                last = await self.redis.xrevrange(stream, "+", "-", count=1)
            except REDIS_ERRORS as exc:
                raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
            self._positions.setdefault(stream, decoded(last[0][0]) if last else "0-0")
            if self.cluster:
                await self._shards.watch(room)
        self._rooms[room] = self._rooms.get(room, 0) + 1
        self._wake.set()
        return await self.presence.enter(room, user, connection, listed)

    async def present(self, room: str) -> list[dict[str, str]]:
        return await self.presence.present(room)

    async def exit(self, room: str, user: dict[str, str], connection: str) -> None:
        member = self.presence.forget(user, connection)
        count = self._rooms.get(room, 0) - 1
        if count <= 0:
            self._rooms.pop(room, None)
            self._positions.pop(self.keys.stream(room), None)
            if self.cluster:
                await self._shards.unwatch(room)
        else:
            self._rooms[room] = count
        await self.presence.exit(room, user, member)

    # --- control --------------------------------------------------------------------------------------

    async def kick(self, user_id: str, code: int, reason: str) -> None:
        await self._announce({"type": "_kick", "user_id": user_id, "code": code, "reason": reason})
