"""Rooms on this instance: who is connected where, and fan-out of broker events to their outboxes.

Every event is encoded once and the same string queued to each socket; a queue that overflows closes
its socket with 4408 (the client resumes), so one slow reader never holds the others back. Presence
changes are coalesced per room (gateway.chat.presence); joins read the room's newest messages from
memory (gateway.chat.tail); resumes are sent a page at a time, as the socket drains, within a byte
budget per user (gateway.chat.backlog).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.chat.backlog import HistoryBacklog
from gateway.chat.broker import Broker, Event
from gateway.chat.frames import encode, error_frame, rate_limited
from gateway.chat.handlers import FrameHandlers, valid_id
from gateway.chat.history import Page, StoreUnavailable
from gateway.chat.member import HubLimits, Member
from gateway.chat.outbox import Backlog, Outbox, server_frame
from gateway.chat.presence import PresenceBatcher, Timer
from gateway.chat.quota import HistoryFull
from gateway.chat.sign_ins import SignInIndex
from gateway.chat.tail import RoomTails
from gateway.limits import KeyedBuckets

log = logging.getLogger("gateway.chat")

FLOODING = 4429
__all__ = ["FLOODING", "Hub", "HubLimits", "Member"]


class Hub(FrameHandlers):
    def __init__(self, broker: Broker, limits: HubLimits | None = None,
                 clock: Callable[[], float] = time.time, timer: Timer | None = None) -> None:
        self.broker = broker
        self.limits = limits or HubLimits()
        self._clock = clock
        self._rooms: dict[str, set[Member]] = {}
        self._users: dict[str, set[Member]] = {}
        self._sign_ins: SignInIndex[Member] = SignInIndex()
        self._rates = KeyedBuckets(self.limits.message_rate, self.limits.message_burst)
        self._user_resumes = KeyedBuckets(self.limits.user_resume_rate, self.limits.user_resume_burst)
        self._resume_bytes = KeyedBuckets(self.limits.user_resume_bytes, 4 * self.limits.user_resume_bytes)
        self.tails = RoomTails(self._newest, self.limits.history_on_join)
        self.presence = PresenceBatcher(broker.present, self._fan_out, self._send_presence_batch,
                                        self._needs_list, clock, self.limits.presence_settle,
                                        self.limits.presence_max_wait, timer)
        self.messages_in = 0
        self.deliveries = 0
        # Control events for other parts of the gateway (the deny-list hears of logouts elsewhere).
        self.handlers: dict[str, Callable[[Event], None]] = {}
        self.listeners: list[Callable[[Event], None]] = []  # hear sign-outs and refreshes too (gateway.live)

    async def start(self) -> None:
        await self.broker.start(self.deliver)

    async def stop(self) -> None:
        await self.presence.stop()
        await self.broker.stop()

    def member(self, room: str, user: dict[str, str]) -> Member:
        limits = self.limits
        return Member(room, user, Outbox(limits.outbox_size, limits.outbox_bytes))

    def sockets_of(self, user_id: str) -> int:
        return len(self._users.get(user_id, ()))

    def members(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def open_sockets(self) -> int:
        return sum(len(members) for members in self._rooms.values())

    def resume_allowed(self, user_id: str) -> float:
        """0 when this user may resume (or join with `?after=`) now, else the seconds to wait."""
        bucket = self._user_resumes.bucket(user_id)
        return 0.0 if bucket.take() else float(bucket.retry_after())

    async def join(self, member: Member, after: str | None = None) -> None:
        """Register first (so nothing published meanwhile is missed), then send welcome, history and
        presence ahead of anything already queued; the client merges by id. `after`: a reconnecting
        client's last id: its history is then everything since (no gap to fill with a later resume),
        sent a page at a time ahead of live frames."""
        self._sign_ins.add(member)
        self._rooms.setdefault(member.room, set()).add(member)
        self._users.setdefault(member.user["id"], set()).add(member)
        # In a storm the room's next presence batch brings this socket its list (gateway.chat.presence).
        batched = member.awaiting_list = self.presence.list_with_batch(member.room)
        present = await self.broker.enter(member.room, member.user, member.id, listed=not batched)
        welcome = encode({"type": "welcome", "user": member.user, "room": member.room,
                          "server_time": int(self._clock() * 1000)})
        presence = None if batched else encode({"type": "presence", "users": present})
        history = await self._history_on_join(member, after)
        if history is None and after is not None:  # more than memory holds: page by page from the store
            member.outbox.prepend([welcome])
            member.outbox.send_backlog(self._backlog(member, after, then=presence))
            return
        head = [welcome] if history is None else [welcome, history]
        member.outbox.prepend(head if presence is None else [*head, presence])

    async def _history_on_join(self, member: Member, after: str | None) -> str | None:
        """The join's `history` frame from memory (gateway.chat.tail); None: `after` needs the store."""
        if after is None:
            return await self.tails.history_frame(member.room)
        budget = self._resume_bytes.bucket(member.user["id"])
        if budget.available() < 0:
            return None  # this user's resumes are over their byte budget: the backlog waits for it
        limits = self.limits
        frame = await self.tails.history_after(member.room, after, limits.history_page, limits.history_page_bytes)
        if frame is not None:
            budget.drain(len(frame))
        return frame

    async def leave(self, member: Member) -> None:
        self._sign_ins.discard(member)
        for index, key in ((self._rooms, member.room), (self._users, member.user["id"])):
            members = index.get(key)
            if members is not None:
                members.discard(member)
                if not members:
                    del index[key]
        if member.room not in self._rooms:
            self.tails.drop(member.room)
            self.presence.forget(member.room)
        try:
            await self.broker.exit(member.room, member.user, member.id)
        except StoreUnavailable:
            log.warning("could not record that a user left %s", member.room)

    async def post(self, member: Member, text: str, client_id: str | None) -> None:
        self.messages_in += 1
        bucket = self._rates.bucket(member.user["id"])
        if not bucket.take():
            member.strikes += 1
            if member.strikes >= self.limits.flood_strikes:
                member.outbox.close(FLOODING, "sustained flooding: wait before reconnecting")
            else:
                member.outbox.put(rate_limited("slow down: too many messages; send it again later",
                                               (1 - bucket.available()) / self.limits.message_rate, client_id))
            return
        member.strikes = 0
        try:
            stored = await self.broker.publish(member.room, member.user, text, client_id)
        except StoreUnavailable:
            member.outbox.put(error_frame("store_unavailable", "the message was not stored; send it again",
                                          client_id))
            return
        except HistoryFull as exc:
            member.outbox.put(error_frame(exc.code, exc.detail, client_id))
            return
        if client_id is not None:
            # Only now: an ack means the message is stored (a resend gets the first id).
            member.outbox.put(encode({"type": "ack", "client_id": client_id, "id": stored.message["id"]}))

    async def resume(self, member: Member, after: str) -> None:
        if not valid_id(member, after):
            return
        own = member.bucket("resumes", self.limits.resume_rate, self.limits.resume_burst)
        if not own.take():
            member.outbox.put(rate_limited("too many resumes on this socket", own.retry_after()))
            return
        wait = self.resume_allowed(member.user["id"])
        if wait:
            member.outbox.put(rate_limited("too many resumes for this user", wait))
            return
        # A resume replaces one still under way: the client's newest `after` is what it needs now.
        current = member.outbox.backlog
        if isinstance(current, HistoryBacklog):
            current.restart(after)
        else:
            member.outbox.send_backlog(self._backlog(member, after))
        await self.send_changes(member, after)

    def _backlog(self, member: Member, after: str, then: str | None = None) -> Backlog:
        return HistoryBacklog(self.broker, member.room, after, self.limits.history_page,
                              self.limits.history_page_bytes, self._resume_bytes.bucket(member.user["id"]),
                              member.outbox.pause, then)

    async def _newest(self, room: str, limit: int) -> Page:
        return await self.broker.page(room, None, limit)

    async def disconnect_user(self, user_id: str, code: int, reason: str) -> None:
        await self.broker.kick(user_id, code, reason)

    async def end_sign_ins(self, reason: str, *, session_id: str | None = None, provider: str | None = None,
                           sid: str | None = None, user_id: str | None = None,
                           before: float | None = None) -> None:
        """Close (4401), on every instance, the sockets of one sign-in (`session_id`), of a provider's
        session (`provider` and `sid`), or of every sign-in of `user_id` made up to `before`."""
        await self._announce({"type": "_end", "session_id": session_id, "provider": provider, "sid": sid,
                              "user_id": user_id, "before": before, "reason": reason})

    async def refreshed(self, session_id: str, sealed: str) -> None:
        """Tell the sockets of sign-in `session_id`, on every instance, its new token cookie (sealed)."""
        await self._announce({"type": "_refresh", "session_id": session_id, "sealed": sealed})

    async def _announce(self, event: Event) -> None:
        """To every instance; with the broker unreachable, to this one at least (the others' sockets then end
        at their next re-check, which the deny-list refuses)."""
        try:
            await self.broker.announce(event)
        except StoreUnavailable as exc:
            log.warning("could not tell the other instances (%s): %s", event["type"], exc)
            self.deliver(event)

    def sockets_of_sign_in(self, session_id: str) -> int:
        return len(self._sign_ins.of_session(session_id))

    def _control(self, kind: str, event: Event) -> bool:
        """Control events between instances; True when `event` was one."""
        if kind == "_kick":
            for member in list(self._users.get(event["user_id"], ())):
                member.outbox.put(error_frame("token_expired" if event["code"] == 4401 else "forbidden",
                                              event["reason"]))
                member.outbox.close(event["code"], event["reason"])
        elif kind == "_end":
            reason = str(event.get("reason") or "signed out")
            for member in self._sign_ins.ended(event, self._users):
                member.outbox.put(error_frame("token_expired", reason))
                member.outbox.close(4401, reason)
        elif kind == "_refresh":
            sealed = event.get("sealed")
            for member in self._sign_ins.of_session(str(event.get("session_id"))):
                if member.on_refresh is not None and isinstance(sealed, str):
                    member.on_refresh(sealed)
        else:
            return False
        return True

    def deliver(self, event: Event) -> None:
        """The broker's callback: fan an event out to this instance's sockets."""
        kind = event.get("type", "")
        handler = self.handlers.get(kind)
        if handler is not None:
            handler(event)
            return
        if self._control(kind, event):
            for listener in self.listeners:
                listener(event)
            return
        room = event.get("room", "")
        if room not in self._rooms:
            return
        if kind in ("join", "leave"):
            self.presence.change(event)
            return
        if kind == "message":
            self.tails.add(event)
        elif kind in ("edit", "delete"):
            self.tails.change(event)
        self._fan_out(room, event)

    def _fan_out(self, room: str, event: Event) -> None:
        members = self._rooms.get(room)
        if members:
            self._send_to(list(members), encode(event))

    def _needs_list(self, room: str) -> bool:
        return any(member.wants_list for member in self._rooms.get(room, ()))

    def _send_presence_batch(self, room: str, changes: list[Event], users: list[dict[str, str]] | None) -> int:
        """A batch of presence changes (gateway.chat.presence): the full list to sockets that wait for one
        or only understand lists, what changed to the others. `users` is None only when no socket of the
        room wants the list (the batcher asked `_needs_list` first, with no await since). Returns the
        frames encoded."""
        members = self._rooms.get(room)
        if not members:
            return 0
        listed = [member for member in members if member.wants_list]
        told = [member for member in members if not member.wants_list]
        sent = 0
        if listed and users is not None:
            for member in listed:
                member.awaiting_list = False
            self._send_to(listed, encode({"type": "presence", "room": room, "users": users}))
            sent += 1
        if told:
            joined = [event["user"] for event in changes if event["type"] == "join"]
            left = [event["user"] for event in changes if event["type"] == "leave"]
            self._send_to(told, encode({"type": "presence_changes", "room": room, "joined": joined, "left": left}))
            sent += 1
        return sent

    def _send_to(self, members: list[Member], frame: str) -> None:
        wire: bytes | None = None
        size = 0
        for member in members:
            outbox = member.outbox
            # The common case, a reader keeping up: one write of the prebuilt frame, no task switch.
            if outbox.direct is not None and outbox.idle():
                if wire is None:
                    wire = server_frame(frame)
                if outbox.direct(wire):
                    continue
            if not size:
                size = len(wire) if wire is not None else len(frame.encode())
            outbox.put(frame, size)
        self.deliveries += len(members)
