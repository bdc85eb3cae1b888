"""Rooms on this instance: who is connected where, and fan-out of broker events to their outboxes.

Every event is encoded once and the same string queued to each socket; a queue that overflows closes
its socket with 4408 (the client resumes), so one slow reader never holds the others back.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.chat.broker import Broker, Event
from gateway.chat.frames import encode, error_frame
from gateway.chat.history import StoreUnavailable, parse_id
from gateway.chat.outbox import Outbox
from gateway.limits import KeyedBuckets

log = logging.getLogger("gateway.chat")

FLOODING = 4429
_ids = itertools.count(1)


@dataclass(eq=False)
class Member:
    """One socket in one room."""

    room: str
    user: dict[str, str]  # {"id", "name"}
    outbox: Outbox = field(default_factory=Outbox)
    id: str = field(default_factory=lambda: f"c{next(_ids)}")
    strikes: int = 0  # messages refused in a row for the rate limit


@dataclass(frozen=True)
class HubLimits:
    history_on_join: int = 50
    outbox_size: int = 256
    message_rate: float = 5.0
    message_burst: float = 10.0
    flood_strikes: int = 20


def server_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455 §5.2): the same bytes for every recipient."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class Hub:
    def __init__(self, broker: Broker, limits: HubLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.limits = limits or HubLimits()
        self._clock = clock
        self._rooms: dict[str, set[Member]] = {}
        self._users: dict[str, set[Member]] = {}
        self._rates = KeyedBuckets(self.limits.message_rate, self.limits.message_burst)
        self.messages_in = 0
        self.deliveries = 0
        # Control events for other parts of the gateway (the deny-list hears of logouts elsewhere).
        self.handlers: dict[str, Callable[[Event], None]] = {}

    async def start(self) -> None:
        await self.broker.start(self.deliver)

    async def stop(self) -> None:
        await self.broker.stop()

    def member(self, room: str, user: dict[str, str]) -> Member:
        return Member(room, user, Outbox(self.limits.outbox_size))

    def sockets_of(self, user_id: str) -> int:
        return len(self._users.get(user_id, ()))

    def members(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def open_sockets(self) -> int:
        return sum(len(members) for members in self._rooms.values())

    async def join(self, member: Member, after: str | None = None) -> None:
        """Register first (so nothing published meanwhile is missed), then send welcome, history and
        presence ahead of anything already queued; the client merges by id. `after`: a reconnecting
        client's last id: its history is then everything since (no gap to fill with a later resume)."""
        self._rooms.setdefault(member.room, set()).add(member)
        self._users.setdefault(member.user["id"], set()).add(member)
        present = await self.broker.enter(member.room, member.user, member.id)
        page = await self.broker.page(member.room, after, 0 if after else self.limits.history_on_join)
        member.outbox.prepend([
            encode({"type": "welcome", "user": member.user, "room": member.room,
                    "server_time": int(self._clock() * 1000)}),
            encode({"type": "history", "messages": page.messages, "truncated": page.truncated}),
            encode({"type": "presence", "users": present}),
        ])

    async def leave(self, member: Member) -> None:
        for index, key in ((self._rooms, member.room), (self._users, member.user["id"])):
            members = index.get(key)
            if members is not None:
                members.discard(member)
                if not members:
                    del index[key]
        try:
            await self.broker.exit(member.room, member.user, member.id)
        except StoreUnavailable:
            log.warning("could not record that a user left %s", member.room)

    async def post(self, member: Member, text: str, client_id: str | None) -> None:
        self.messages_in += 1
        if not self._rates.bucket(member.user["id"]).take():
            member.strikes += 1
            if member.strikes >= self.limits.flood_strikes:
                member.outbox.close(FLOODING, "sustained flooding: wait before reconnecting")
            else:
                member.outbox.put(error_frame("rate_limited", "slow down: too many messages"))
            return
        member.strikes = 0
        try:
            stored = await self.broker.publish(member.room, member.user, text, client_id)
        except StoreUnavailable:
            member.outbox.put(error_frame("store_unavailable", "the message was not stored; send it again"))
            return
        if client_id is not None:
            # Only now: an ack means the message is stored (a resend gets the first id).
            member.outbox.put(encode({"type": "ack", "client_id": client_id, "id": stored.message["id"]}))

    async def resume(self, member: Member, after: str) -> None:
        try:
            parse_id(after)
        except ValueError as exc:
            member.outbox.put(error_frame("bad_frame", str(exc)))
            return
        try:
            page = await self.broker.page(member.room, after, 0)
        except StoreUnavailable:
            member.outbox.put(error_frame("store_unavailable", "history is unavailable; resume again later"))
            return
        member.outbox.put(encode({"type": "history", "messages": page.messages, "truncated": page.truncated}))

    async def disconnect_user(self, user_id: str, code: int, reason: str) -> None:
        await self.broker.kick(user_id, code, reason)

    def deliver(self, event: Event) -> None:
        """The broker's callback: fan an event out to this instance's sockets."""
        handler = self.handlers.get(event.get("type", ""))
        if handler is not None:
            handler(event)
            return
        if event.get("type") == "_kick":
            for member in list(self._users.get(event["user_id"], ())):
                member.outbox.put(error_frame("token_expired" if event["code"] == 4401 else "forbidden",
                                              event["reason"]))
                member.outbox.close(event["code"], event["reason"])
            return
        members = self._rooms.get(event.get("room", ""))
        if not members:
            return
        frame = encode(event)
        wire: bytes | None = None
        for member in list(members):
            outbox = member.outbox
            # The common case, a reader keeping up: one write of the prebuilt frame, no task switch.
            if outbox.direct is not None and outbox.idle():
                if wire is None:
                    wire = server_frame(frame)
                if outbox.direct(wire):
                    continue
            outbox.put(frame)
        self.deliveries += len(members)

