"""The hub's answers to the frames that came with the chat's second round: older pages, edits and deletes,
read marks, typing, and the changes a resuming socket is owed (docs/protocol.md). A mixin of Hub, kept
apart from its rooms, presence and fan-out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.chat.broker import Broker
from gateway.chat.edits import Change, EditRefused
from gateway.chat.frames import encode, error_frame, rate_limited
from gateway.chat.history import StoreUnavailable, parse_id
from gateway.chat.scrollback import older_frame
from gateway.chat.tail import RoomTails
from gateway.limits import KeyedBuckets

if TYPE_CHECKING:
    from gateway.chat.member import HubLimits, Member

log = logging.getLogger("gateway.chat")


def valid_id(member: Member, message_id: str) -> bool:
    """A message id from a client frame; a malformed one gets `error bad_frame` (the socket stays open)."""
    try:
        parse_id(message_id)
    except ValueError as exc:
        member.outbox.put(error_frame("bad_frame", str(exc)))
        return False
    return True



def duration(seconds: float) -> str:
    return f"{seconds / 60:g} minutes" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} seconds"


class FrameHandlers:
    broker: Broker
    limits: HubLimits
    tails: RoomTails
    _rates: KeyedBuckets
    _clock: Callable[[], float]

    async def older(self, member: Member, before: str) -> None:
        """`history {before}`: one page of the messages just older than `before` (a page scrolled back),
        at most GATEWAY_HISTORY_ON_JOIN messages and `history_page_bytes` of them (always one)."""
        if not valid_id(member, before):
            return
        bucket = member.bucket("older", self.limits.older_rate, self.limits.older_burst)
        if not bucket.take():
            member.outbox.put(rate_limited("too many requests for older messages on this socket",
                                           bucket.retry_after()))
            return
        try:
            page = await self.broker.page_before(member.room, before, self.limits.history_on_join)
        except StoreUnavailable:
            member.outbox.put(error_frame("store_unavailable", "older messages cannot be read now; ask again"))
            return
        member.outbox.put(older_frame(before, page, self.limits.history_page_bytes))

    async def change(self, member: Member, message_id: str, text: str | None) -> None:
        """`edit` (text) or `delete` (None) of the member's own message, within the edit window. Counted
        against the message rate. Stored, then delivered to every socket of the room on every instance."""
        if not valid_id(member, message_id):
            return
        bucket = self._rates.bucket(member.user["id"])
        if not bucket.take():
            member.outbox.put(rate_limited("slow down: too many messages and edits",
                                           (1 - bucket.available()) / self.limits.message_rate))
            return
        window = self.limits.edit_window
        change = Change(message_id, member.user["id"], text, int((self._clock() - window) * 1000), duration(window))
        try:
            if window <= 0:
                raise EditRefused("messages cannot be edited or deleted here (GATEWAY_EDIT_WINDOW is 0)")
            await self.broker.change(member.room, change)
        except EditRefused as exc:
            member.outbox.put(encode({"type": "error", "code": exc.code, "message": exc.detail, "id": message_id}))
        except StoreUnavailable:
            member.outbox.put(error_frame("store_unavailable", "the change was not stored; send it again"))

    async def read(self, member: Member, message_id: str) -> None:
        """`read {id}`: keep where this user has read the room to (at most `older_rate` a second per socket:
        beyond that the frame is dropped, the next one carries a newer id anyway)."""
        if not valid_id(member, message_id):
            return
        if not member.bucket("reads", self.limits.older_rate, self.limits.older_burst).take():
            return
        try:
            await self.broker.mark_read(member.user["id"], member.room, message_id)
        except StoreUnavailable:
            log.warning("could not record a read mark in %s", member.room)

    async def typing(self, member: Member) -> None:
        """`typing`: tell the room, on every instance, that this user is typing. Never stored; throttled per
        socket (extras dropped: a client repeats it while typing anyway)."""
        if not member.bucket("typing", self.limits.typing_rate, 3).take():
            return
        try:
            await self.broker.announce({"type": "typing", "room": member.room, "user": member.user})
        except StoreUnavailable:
            pass  # a hint, not a message: nothing to resend

    async def send_changes(self, member: Member, after: str) -> None:
        """Edits and deletes since `after`, for a socket resuming from it: they may touch messages it holds.
        Queued behind the resume's history pages."""
        limit = self.limits.changes_on_resume
        try:
            frames = await self.tails.changes_since(
                member.room, after, lambda: self.broker.changes_since(member.room, after, limit))
        except StoreUnavailable:
            log.warning("could not read the changes of %s for a resume", member.room)
            return
        for frame in frames:
            member.outbox.put(frame)
