"""Edits and deletes over Redis (gateway.chat.edits): kept apart from the broker's own keys and scripts.

- `<prefix>changed:<room>`: a hash, message id -> the fields the message takes now (its stream entry
  never changes); pages read through it. Trimmed to the messages the room still keeps.
- `<prefix>changes:<room>`: a stream of change events (MAXLEN ~ the room's bound), for resuming clients.
- In a Cluster both carry the room's hash tag, as its stream does (gateway.chat.redis_keys).
- The check (the author, the window, not deleted) and both writes are one script; the event then goes to
  every instance over the events channel, like presence.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from gateway.chat.edits import DELETED, NOT_FOUND, NOT_YOURS, Change, EditRefused, outcome, too_late
from gateway.chat.history import StoreUnavailable, parse_id
from gateway.redis_connect import REDIS_ERRORS

if TYPE_CHECKING:
    from gateway.chat.redis_broker import RedisBroker

# KEYS[1] the room's stream, KEYS[2] its changed hash, KEYS[3] its changes stream; ARGV[1] message id,
# ARGV[2] user id, ARGV[3] not-before ms (the edit window), ARGV[4] the fields (JSON), ARGV[5] the event
# (JSON), ARGV[6] maxlen. Returns 1 done, -1 no such message, -2 not the user's, -3 too late, -4 deleted.
CHANGE = """
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return -1 end
local fields, body = found[1][2], nil
for i = 1, #fields, 2 do if fields[i] == 'm' then body = fields[i + 1] end end
if not body or cjson.decode(body)['user']['id'] ~= ARGV[2] then return -2 end
if tonumber(string.match(ARGV[1], '^(%d+)-')) < tonumber(ARGV[3]) then return -3 end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and cjson.decode(current)['deleted'] then return -4 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'e', ARGV[5])
if redis.call('HLEN', KEYS[2]) > tonumber(ARGV[6]) then
  -- More changed messages than the room keeps: forget those trimmed from the room.
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local fm, fs = string.match(first[1][1], '^(%d+)-(%d+)$')
    for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
      local m, s = string.match(id, '^(%d+)-(%d+)$')
      if tonumber(m) < tonumber(fm) or (m == fm and tonumber(s) < tonumber(fs)) then redis.call('HDEL', KEYS[2], id) end
    end
  end
end
return 1
"""

REFUSALS = {-1: NOT_FOUND, -2: NOT_YOURS, -4: DELETED}


def _changed(broker: RedisBroker, room: str) -> str:
    return broker.keys.changed(room)


def _changes(broker: RedisBroker, room: str) -> str:
    return broker.keys.changes(room)


async def change(broker: RedisBroker, room: str, change: Change) -> None:
    now = int(broker._clock() * 1000)
    stream = broker.keys.stream(room)  # with _changed and _changes: one slot in a Cluster
    try:
        found = await broker.redis.xrange(stream, change.message_id, change.message_id)
        author = broker._message(room, *found[0])["user"] if found else {"id": change.user_id, "name": ""}
        state, event = outcome(room, author, change, now)
        answer = int(await broker.change_script(
            keys=[stream, _changed(broker, room), _changes(broker, room)],
            args=[change.message_id, change.user_id, change.not_before_ms, json.dumps(state, ensure_ascii=False),
                  json.dumps(event, ensure_ascii=False), broker.history_limit]))
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
    if answer == -3:
        raise too_late(change)
    if answer != 1:
        raise EditRefused(REFUSALS.get(answer, NOT_FOUND))
    await broker.announce(event)


async def changes_since(broker: RedisBroker, room: str, after: str, limit: int) -> list[dict[str, Any]]:
    ms = parse_id(after)[0]
    try:
        entries = await broker.redis.xrange(_changes(broker, room), f"{ms}-0", "+", count=limit)
    except REDIS_ERRORS as exc:
        raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
    return [json.loads(fields.get(b"e") or fields.get("e")) for _, fields in entries]


async def merged(broker: RedisBroker, room: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` as edited or deleted since they were stored. Raises one of REDIS_ERRORS (the caller maps it)."""
    if not messages:
        return messages
    states = await broker.redis.hmget(_changed(broker, room), [message["id"] for message in messages])
    return [message if state is None else {**message, **json.loads(state)}
            for message, state in zip(messages, states, strict=True)]
