"""Presence over Redis (the Redis broker's part): who is in a room, on every instance.

A sorted set per room (`<prefix>presence:<room>`, gateway.chat.redis_keys) of "<user id> <instance>:<connection>"
scored by expiry. This instance's heartbeat pushes its entries' expiry on every third of the TTL, puts back
entries lost in a failover or a Redis restart, and sweeps expired entries of the rooms it has sockets in:
whichever instance sweeps a crashed instance's last entry of a user announces the `leave`. A user's first
live entry announces the `join` (the ENTER and EXIT scripts, gateway.chat.redis_scripts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.chat.broker import Event
from gateway.chat.history import StoreUnavailable
from gateway.chat.redis_keys import RoomKeys
from gateway.chat.redis_scripts import ENTER, EXIT
from gateway.redis_connect import REDIS_ERRORS, decoded

log = logging.getLogger("gateway.redis")


class RedisPresence:
    """This instance's presence entries (member -> room and user) and the Redis commands that keep them."""

    def __init__(self, client: Any, keys: RoomKeys, instance: str, ttl: float, clock: Callable[[], float],
                 announce: Callable[[Event], Awaitable[None]]) -> None:
        self.client = client  # the broker's command client
        self.keys = keys
        self.instance = instance  # this instance's id, part of every member it writes
        self.ttl = ttl  # seconds an entry lives without a heartbeat
        self._clock = clock
        self._announce = announce  # the broker's: join and leave to every instance
        self._enter = client.register_script(ENTER)
        self._exit = client.register_script(EXIT)
        self._mine: dict[str, tuple[str, dict[str, str]]] = {}  # presence member -> (room, user)

    def _key(self, room: str) -> str:
        return self.keys.presence(room)

    def member(self, user: dict[str, str], connection: str) -> str:
        """The sorted set's member for one connection of this instance."""
        return f"{user['id']} {self.instance}:{connection}"

    def connections(self) -> list[tuple[str, dict[str, str], str]]:
        """(room, user, connection) of every entry this instance keeps alive."""
        return [(room, user, member.removeprefix(f"{user['id']} {self.instance}:"))
                for member, (room, user) in self._mine.items()]

    async def enter(self, room: str, user: dict[str, str], connection: str,
                    listed: bool = True) -> list[dict[str, str]]:
        """Write the connection's entry; announce `join` on the user's first. Who is present when `listed`."""
        member = self.member(user, connection)
        self._mine[member] = (room, user)
        now = self._clock()
        try:
            await self.client.hset(self.keys.names, user["id"], user["name"])
            first = await self._enter(keys=[self._key(room)], args=[user["id"], member, now + self.ttl, now])
            if first:
                await self._announce({"type": "join", "room": room, "user": user})
            return await self.present(room) if listed else []
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def present(self, room: str) -> list[dict[str, str]]:
        try:
            members = await self.client.zrangebyscore(self._key(room), self._clock(), "+inf")
            ids = sorted({decoded(m).split(" ", 1)[0] for m in members})
            names = await self.client.hmget(self.keys.names, ids) if ids else []
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None
        return [{"id": i, "name": decoded(n) if n else i} for i, n in zip(ids, names, strict=True)]

    def forget(self, user: dict[str, str], connection: str) -> str:
        """Stop keeping the connection's entry alive (the heartbeat skips it from now on); its member."""
        member = self.member(user, connection)
        self._mine.pop(member, None)
        return member

    async def exit(self, room: str, user: dict[str, str], member: str) -> None:
        """Remove a forgotten entry; announce `leave` after the user's last."""
        try:
            last = await self._exit(keys=[self._key(room)], args=[user["id"], member, self._clock()])
            if last:
                await self._announce({"type": "leave", "room": room, "user": user})
        except REDIS_ERRORS as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    async def heartbeat(self) -> None:
        """Keep this instance's presence entries alive; sweep entries whose instance stopped beating."""
        while True:
            await asyncio.sleep(self.ttl / 3)
            now = self._clock()
            try:
                for member, (room, user) in list(self._mine.items()):
                    kept = await self.client.zadd(self._key(room), {member: now + self.ttl}, xx=True, ch=True)
                    if not kept and member in self._mine:  # lost in a failover or a Redis restart
                        await self._enter_again(room, user, member, now)
                await self._sweep(now)
            except REDIS_ERRORS as exc:
                log.warning("presence heartbeat failed (%s)", type(exc).__name__)

    async def _enter_again(self, room: str, user: dict[str, str], member: str, now: float) -> None:
        await self.client.hset(self.keys.names, user["id"], user["name"])
        if await self._enter(keys=[self._key(room)], args=[user["id"], member, now + self.ttl, now]):
            await self._announce({"type": "join", "room": room, "user": user})

    async def _sweep(self, now: float) -> None:
        rooms = {room for room, _ in self._mine.values()}
        for room in rooms:
            key = self._key(room)
            for raw in await self.client.zrangebyscore(key, "-inf", now):
                member = decoded(raw)
                user_id = member.split(" ", 1)[0]
                last = await self._exit(keys=[key], args=[user_id, member, now])
                if last:
                    name = await self.client.hget(self.keys.names, user_id)
                    await self._announce({"type": "leave", "room": room,
                                          "user": {"id": user_id, "name": decoded(name) if name else user_id}})
