"""The Redis broker: several gateway instances share rooms, history, presence and control notices.

- One Stream per room (`<prefix>room:<name>`): XADD with MAXLEN ~ keeps history bounded; stream ids are
  the message ids. One XREAD BLOCK loop per instance fans out to local sockets; XRANGE serves history.
- A resend of (user, client_id) is stored once: the dedupe key is set next to the XADD in one Lua script.
- Presence: a sorted set per room of "<user id> <connection>" scored by expiry, refreshed by heartbeats;
  entries of a crashed instance expire and whichever instance sweeps them announces the `leave`.
- join/leave and control notices (close a user's sockets) travel over pub/sub.
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
from redis.exceptions import RedisError

from gateway.chat import redis_edits, redis_rooms
from gateway.chat.broker import Deliver, Event
from gateway.chat.edits import Change
from gateway.chat.frames import encode
from gateway.chat.history import Page, Stored, StoreUnavailable, TextPage, parse_id
from gateway.chat.quota import HistoryQuota
from gateway.chat.rooms import RoomSummary

log = logging.getLogger("gateway.redis")

# KEYS[1] stream, KEYS[2] dedupe key, KEYS[3] rooms hash (room -> who started it), KEYS[4] the rooms this
# user started (zset by ms); ARGV[1] maxlen, ARGV[2] body, ARGV[3] dedupe ttl, ARGV[4] "1" to dedupe,
# ARGV[5] room, ARGV[6] user id, ARGV[7] now ms, ARGV[8] max rooms, ARGV[9] rooms per user per day.
# Returns {1, id} stored, {0, first id} a resend, {-1, ''} too many rooms, {-2, ''} too many for this user.
PUBLISH = """
if ARGV[4] == '1' then
  local first = redis.call('GET', KEYS[2])
  if first then return {0, first} end
end
if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 0 then
  if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[8]) then return {-1, ''} end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[7]) - 86400000)
  if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[9]) then return {-2, ''} end
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
  redis.call('ZADD', KEYS[4], ARGV[7], ARGV[5])
  redis.call('PEXPIRE', KEYS[4], 86400000)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], id, 'EX', ARGV[3]) end
return {1, id}
"""

# KEYS[1] presence zset; ARGV[1] user id, ARGV[2] member, ARGV[3] expiry, ARGV[4] now.
# Returns 1 when this is the user's first live connection in the room.
ENTER = """
local prefix = ARGV[1] .. ' '
local live = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[4], '+inf')) do
  if string.sub(member, 1, #prefix) == prefix then live = live + 1 end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if live == 0 then return 1 else return 0 end
"""

# KEYS[1] presence zset; ARGV[1] user id, ARGV[2] member, ARGV[3] now.
# Returns 1 when the member was removed by us and it was the user's last live connection.
EXIT = """
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return 0 end
local prefix = ARGV[1] .. ' '
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[3], '+inf')) do
  if string.sub(member, 1, #prefix) == prefix then return 0 end
end
return 1
"""


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBroker:
    def __init__(self, url: str, prefix: str = "gateway:", history_limit: int = 10_000,
                 presence_ttl: float = 30.0, dedupe_ttl: int = 86_400, block_ms: int = 500,
                 clock: Callable[[], float] = time.time, quota: HistoryQuota | None = None) -> None:
        self.quota = quota or HistoryQuota()
        self.url = url
        self.prefix = prefix
        self.history_limit = history_limit
        self.presence_ttl = presence_ttl
        self.dedupe_ttl = dedupe_ttl
        self.block_ms = block_ms
        self._clock = clock
        self.instance = uuid.uuid4().hex[:12]
        # redis-py's command types are unions of every reply shape; we read replies by hand, so Any.
        self.redis: Any = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5,
                                                       socket_connect_timeout=5, health_check_interval=15)
        self._reader: Any = redis.Redis.from_url(url, socket_timeout=block_ms / 1000 + 5,
                                                         socket_connect_timeout=5)
        self._deliver: Deliver = lambda event: None
        self._publish = self.redis.register_script(PUBLISH)
        self._enter = self.redis.register_script(ENTER)
        self._exit = self.redis.register_script(EXIT)
        self.change_script = self.redis.register_script(redis_edits.CHANGE)
        self._positions: dict[str, str] = {}  # stream key -> last id delivered on this instance
        self._rooms: dict[str, int] = {}  # local sockets per room
        self._mine: dict[str, tuple[str, dict[str, str]]] = {}  # presence member -> (room, user)
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.connected = False

    # --- keys ---------------------------------------------------------------------------------------

    def _stream(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def _presence(self, room: str) -> str:
        return f"{self.prefix}presence:{room}"

    def _dedupe(self, user_id: str, client_id: str) -> str:
        return f"{self.prefix}sent:{user_id}:{client_id}"

    @property
    def _events(self) -> str:
        return f"{self.prefix}events"

    # --- life -----------------------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot reach Redis at GATEWAY_BROKER_URL: {exc}") from None
        self.connected = True
        try:
            pubsub = await self._subscribe()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot subscribe at GATEWAY_BROKER_URL: {exc}") from None
        self._tasks = [asyncio.create_task(self._read_streams(), name="redis-streams"),
                       asyncio.create_task(self._read_events(pubsub), name="redis-events"),
                       asyncio.create_task(self._heartbeat(), name="redis-presence")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for member, (room, user) in list(self._mine.items()):
            try:
                await self.exit(room, user, member.split(" ", 1)[1])
            except StoreUnavailable:
                break
        await self.redis.aclose()
        await self._reader.aclose()

    async def healthy(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    # --- messages -------------------------------------------------------------------------------------

    def _message(self, room: str, entry_id: bytes | str, fields: dict[Any, Any]) -> dict[str, Any]:
        body = json.loads(fields.get(b"m") or fields.get("m") or "{}")
        message_id = _decode(entry_id)
        message: dict[str, Any] = {"type": "message", "id": message_id, "room": room, "user": body["user"],
                                   "text": body["text"], "ts": int(message_id.split("-")[0])}
        if body.get("client_id") is not None:
            message["client_id"] = body["client_id"]
        return message

    async def publish(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        body = json.dumps({"user": user, "text": text, "client_id": client_id}, ensure_ascii=False)
        dedupe = self._dedupe(user["id"], client_id) if client_id is not None else self._dedupe(user["id"], "-")
        try:
            fresh, message_id = await self._publish(
                keys=[self._stream(room), dedupe, f"{self.prefix}rooms", f"{self.prefix}started:{user['id']}"],
                args=[self.history_limit, body, self.dedupe_ttl, "1" if client_id is not None else "0", room,
                      user["id"], int(self._clock() * 1000), self.quota.max_rooms, self.quota.rooms_per_user])
            if fresh < 0:
                refusal = (self.quota.too_many_rooms(self.quota.max_rooms) if fresh == -1
                           else self.quota.too_many_for(self.quota.rooms_per_user))
                raise refusal or StoreUnavailable("history limits: unexpected answer")
            message_id = _decode(message_id)
            if fresh:
                await redis_rooms.touch(self, room, int(message_id.split("-")[0]))
                return Stored({"type": "message", "id": message_id, "room": room, "user": user, "text": text,
                               "ts": int(message_id.split("-")[0]),
                               **({"client_id": client_id} if client_id is not None else {})}, duplicate=False)
            found = await self.redis.xrange(self._stream(room), message_id, message_id)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        if found:
            return Stored(self._message(room, *found[0]), duplicate=True)
        # The first copy was trimmed from the room already: answer with its id all the same.
        return Stored({"type": "message", "id": message_id, "room": room, "user": user, "text": text,
                       "ts": int(message_id.split("-")[0]), "client_id": client_id}, duplicate=True)

    async def page(self, room: str, after: str | None, limit: int) -> Page:
        stream = self._stream(room)
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
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        truncated = trimmed is not None and trimmed > start
        return Page(messages, truncated, more=len(entries) > limit)

    async def page_before(self, room: str, before: str, limit: int) -> Page:
        """Older messages (a `history {before}` frame): XREVRANGE from just below `before`."""
        parse_id(before)
        stream = self._stream(room)
        try:
            entries = await self.redis.xrevrange(stream, f"({before}", "-", count=limit + 1)
            trimmed = await self._trimmed(stream)
            messages = await redis_edits.merged(self, room,
                                                [self._message(room, i, f) for i, f in reversed(entries[:limit])])
        except (RedisError, OSError) as exc:
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
        return parse_id(_decode(info["first-entry"][0]))

    async def _read_streams(self) -> None:
        """One XREAD loop for all rooms with local sockets; new rooms are picked up within block_ms."""
        failures = 0
        while True:
            streams = {self._stream(room): self._positions.get(self._stream(room), "$") for room in self._rooms}
            if not streams:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                answer = await self._reader.xread(streams, block=self.block_ms)
                failures = 0
                self.connected = True
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                failures += 1
                self.connected = False
                log.warning("Redis stream read failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
                continue
            for stream_key, entries in answer or []:
                key = _decode(stream_key)
                room = key.removeprefix(f"{self.prefix}room:")
                for entry_id, fields in entries:
                    self._positions[key] = _decode(entry_id)
                    try:
                        self._deliver(self._message(room, entry_id, fields))
                    except (ValueError, KeyError, TypeError):
                        log.warning("skipped a malformed entry in %s", key)

    async def _subscribe(self) -> Any:
        pubsub = self._reader.pubsub()
        await pubsub.subscribe(self._events)
        return pubsub

    async def _read_events(self, pubsub: Any) -> None:
        """Listen on the events channel; subscribed before start() returns, so nothing announced after
        that is missed (and after a lost connection, resubscribe with backoff)."""
        failures = 0
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        self._deliver(event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                failures += 1
                log.warning("Redis event subscription lost (%s); resubscribing", type(exc).__name__)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except (RedisError, OSError):
                        pass
                    pubsub = None

    async def announce(self, event: Event) -> None:
        """Tell every instance (their hubs' `deliver`)."""
        await self._announce(event)

    async def _announce(self, event: Event) -> None:
        try:
            await self.redis.publish(self._events, json.dumps(event, ensure_ascii=False))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    # --- presence -------------------------------------------------------------------------------------

    async def enter(self, room: str, user: dict[str, str], connection: str,
                    listed: bool = True) -> list[dict[str, str]]:
        member = f"{user['id']} {self.instance}:{connection}"
        stream = self._stream(room)
        if room not in self._rooms:
            # Deliver from the current end of the stream: whatever `page` returns next covers the rest.
            try:
                last = await self.redis.xrevrange(stream, "+", "-", count=1)
            except (RedisError, OSError) as exc:
                raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
            self._positions.setdefault(stream, _decode(last[0][0]) if last else "0-0")
        self._rooms[room] = self._rooms.get(room, 0) + 1
        self._wake.set()
        self._mine[member] = (room, user)
        now = self._clock()
        try:
            await self.redis.hset(f"{self.prefix}names", user["id"], user["name"])
            first = await self._enter(keys=[self._presence(room)],
                                      args=[user["id"], member, now + self.presence_ttl, now])
            if first:
                await self._announce({"type": "join", "room": room, "user": user})
            return await self.present(room) if listed else []
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def present(self, room: str) -> list[dict[str, str]]:
        try:
            members = await self.redis.zrangebyscore(self._presence(room), self._clock(), "+inf")
            ids = sorted({_decode(m).split(" ", 1)[0] for m in members})
            names = await self.redis.hmget(f"{self.prefix}names", ids) if ids else []
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return [{"id": i, "name": _decode(n) if n else i} for i, n in zip(ids, names, strict=True)]

    async def exit(self, room: str, user: dict[str, str], connection: str) -> None:
        member = f"{user['id']} {self.instance}:{connection}"
        self._mine.pop(member, None)
        count = self._rooms.get(room, 0) - 1
        if count <= 0:
            self._rooms.pop(room, None)
            self._positions.pop(self._stream(room), None)
        else:
            self._rooms[room] = count
        try:
            last = await self._exit(keys=[self._presence(room)], args=[user["id"], member, self._clock()])
            if last:
                await self._announce({"type": "leave", "room": room, "user": user})
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def _heartbeat(self) -> None:
        """Keep this instance's presence entries alive; sweep entries whose instance stopped beating."""
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            now = self._clock()
            try:
                for member, (room, _user) in list(self._mine.items()):
                    await self.redis.zadd(self._presence(room), {member: now + self.presence_ttl}, xx=True)
                await self._sweep(now)
            except (RedisError, OSError) as exc:
                log.warning("presence heartbeat failed (%s)", type(exc).__name__)

    async def _sweep(self, now: float) -> None:
        rooms = {room for room, _ in self._mine.values()}
        for room in rooms:
            key = self._presence(room)
            for raw in await self.redis.zrangebyscore(key, "-inf", now):
                member = _decode(raw)
                user_id = member.split(" ", 1)[0]
                last = await self._exit(keys=[key], args=[user_id, member, now])
                if last:
                    name = await self.redis.hget(f"{self.prefix}names", user_id)
                    await self._announce({"type": "leave", "room": room,
                                          "user": {"id": user_id, "name": _decode(name) if name else user_id}})

    # --- control --------------------------------------------------------------------------------------

    async def kick(self, user_id: str, code: int, reason: str) -> None:
        await self._announce({"type": "_kick", "user_id": user_id, "code": code, "reason": reason})
