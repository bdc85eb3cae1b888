"""The room list over Redis (gateway.chat.rooms): the last id each user read per room, in a hash per
user (`<prefix>read:<user id>`, room -> id, expiring 90 days after the last read), and the rooms by their
last message in a sorted set (`<prefix>active`, room -> ms; as many as the broker's `<prefix>rooms` hash,
which GATEWAY_HISTORY_MAX_ROOMS bounds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.chat import redis_edits
from gateway.chat.history import StoreUnavailable, parse_id
from gateway.chat.rooms import MAX_ROOMS, RECENT_MS, UNREAD_CAP, RoomSummary, summary
from gateway.redis_connect import REDIS_ERRORS

if TYPE_CHECKING:
    from gateway.chat.redis_broker import RedisBroker

READ_TTL = 90 * 86_400

# KEYS[1] the user's read hash; ARGV[1] room, ARGV[2] id, ARGV[3] ttl. Keeps the newest id.
MARK_READ = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local om, os = string.match(old, '^(%d+)-(%d+)$')
  local nm, ns = string.match(ARGV[2], '^(%d+)-(%d+)$')
  if tonumber(om) > tonumber(nm) or (om == nm and tonumber(os) >= tonumber(ns)) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


def _reads(broker: RedisBroker, user_id: str) -> str:
    return broker.keys.reads(user_id)


async def mark_read(broker: RedisBroker, user_id: str, room: str, message_id: str) -> None:
    parse_id(message_id)
    try:
        await broker.redis.eval(MARK_READ, 1, _reads(broker, user_id), room, message_id, READ_TTL)
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None


async def touch(broker: RedisBroker, room: str, ms: int) -> None:
    """A message was stored in `room` at `ms` (after the broker's publish)."""
    await broker.redis.zadd(broker.keys.active, {room: ms}, gt=True)


async def rooms(broker: RedisBroker, user_id: str, name: str) -> list[RoomSummary]:
    since = int(broker._clock() * 1000) - RECENT_MS
    try:
        names = [entry.decode() if isinstance(entry, bytes) else str(entry) for entry in
                 await broker.redis.zrevrangebyscore(broker.keys.active, "+inf", since, start=0, num=MAX_ROOMS)]
        async with broker.redis.pipeline(transaction=False) as pipe:
            for room in names:
                pipe.xrevrange(broker.keys.stream(room), "+", "-", count=1)
            newest = await pipe.execute()
        active = [(room, broker._message(room, *entries[0])) for room, entries in zip(names, newest, strict=True)
                  if entries]
        active = sorted([(room, last) for room, last in active if last["ts"] >= since],
                        key=lambda pair: parse_id(pair[1]["id"]), reverse=True)[:MAX_ROOMS]
        reads = await broker.redis.hmget(_reads(broker, user_id), [room for room, _ in active]) if active else []
        found = []
        for (room, last), read in zip(active, reads, strict=True):
            start = f"({read.decode() if isinstance(read, bytes) else read}" if read else "-"
            entries = await broker.redis.xrange(broker.keys.stream(room), start, "+", count=UNREAD_CAP)
            unread = await redis_edits.merged(broker, room, [broker._message(room, *entry) for entry in entries])
            found.append(summary(room, last, unread, user_id, name))
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
    return found
