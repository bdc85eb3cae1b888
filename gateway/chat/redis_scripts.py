"""The Redis broker's Lua scripts. Each touches the keys of one room (plus, with one Redis, the history
limits' keys), so in a Cluster each runs on one shard (gateway.chat.redis_keys)."""

from __future__ import annotations

# A resend: the first copy's id. The EXPIRE is a write on purpose: a WAIT after this script then also
# covers the first copy (replicas apply writes in order), which a WAIT that timed out may not have.
_DEDUPE = """
if ARGV[4] == '1' then
  local first = redis.call('GET', {dedupe})
  if first then
    redis.call('EXPIRE', {dedupe}, ARGV[3])
    return {{0, first}}
  end
end
"""

# The history limits: a room not seen before counts against the rooms kept and the rooms this user started.
_CLAIM = """
if redis.call('HEXISTS', {rooms}, {room}) == 0 then
  if redis.call('HLEN', {rooms}) >= tonumber({max_rooms}) then return {{-1, ''}} end
  redis.call('ZREMRANGEBYSCORE', {started}, '-inf', tonumber({now}) - 86400000)
  if redis.call('ZCARD', {started}) >= tonumber({per_user}) then return {{-2, ''}} end
  redis.call('HSET', {rooms}, {room}, {user})
  redis.call('ZADD', {started}, {now}, {room})
  redis.call('PEXPIRE', {started}, 86400000)
end
"""

_STORE = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2])
if ARGV[4] == '1' then redis.call('SET', KEYS[2], id, 'EX', ARGV[3]) end
{announce}return {{1, id}}
"""

# One Redis. KEYS[1] stream, KEYS[2] dedupe key, KEYS[3] rooms hash (room -> who started it), KEYS[4] the
# rooms this user started (zset by ms); ARGV[1] maxlen, ARGV[2] body, ARGV[3] dedupe ttl, ARGV[4] "1" to
# dedupe, ARGV[5] room, ARGV[6] user id, ARGV[7] now ms, ARGV[8] max rooms, ARGV[9] rooms per user per day.
# Returns {1, id} stored, {0, first id} a resend, {-1, ''} too many rooms, {-2, ''} too many for this user.
PUBLISH = (_DEDUPE.format(dedupe="KEYS[2]")
           + _CLAIM.format(rooms="KEYS[3]", started="KEYS[4]", room="ARGV[5]", user="ARGV[6]", now="ARGV[7]",
                           max_rooms="ARGV[8]", per_user="ARGV[9]")
           + _STORE.format(announce=""))

# Cluster, the room's shard. KEYS and ARGV[1..4] as PUBLISH; ARGV[5] the room's sharded channel, told the
# new id so that instances reading the room fetch it now rather than at their next poll.
PUBLISH_IN_ROOM = _DEDUPE.format(dedupe="KEYS[2]") + _STORE.format(
    announce="redis.call('SPUBLISH', ARGV[5], id)\n")

# Cluster, the {quota} shard: KEYS[1] rooms hash, KEYS[2] the user's started rooms; ARGV[1] room,
# ARGV[2] user id, ARGV[3] now ms, ARGV[4] max rooms, ARGV[5] rooms per user. {1, ''} when allowed.
CLAIM_ROOM = _CLAIM.format(rooms="KEYS[1]", started="KEYS[2]", room="ARGV[1]", user="ARGV[2]", now="ARGV[3]",
                           max_rooms="ARGV[4]", per_user="ARGV[5]") + "return {1, ''}\n"

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
