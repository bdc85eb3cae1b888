"""Where rooms, history and presence live, behind one small interface (encode/broadcaster style).

The embedded MemoryBroker keeps presence in this process and history in SQLite; a Redis broker shares
them between instances. The hub hands each broker one `deliver` callback and gets every event of every
room through it: messages once stored, presence changes, and control notices (a user to disconnect).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gateway.chat.edits import Change
from gateway.chat.history import Page, SqliteHistory, Stored, TextPage
from gateway.chat.rooms import RoomSummary

Event = dict[str, Any]
Deliver = Callable[[Event], None]


class Broker(Protocol):
    async def start(self, deliver: Deliver) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        """Store, then deliver to every instance; a resend of (user, client_id) is stored once."""
        ...

    async def page(self, room: str, after: str | None, limit: int) -> Page:
        """The newest `limit` messages (after=None), or the oldest `limit` after `after` (`more` when
        further ones follow)."""
        ...

    async def page_text(self, room: str, after: str, limit: int) -> TextPage:
        """`page(room, after, limit)` with each message as its JSON text (a resume's history frames)."""
        ...

    async def page_before(self, room: str, before: str, limit: int) -> Page:
        """The newest `limit` messages older than `before`, oldest first (`truncated`: older ones exist)."""
        ...

    async def change(self, room: str, change: Change) -> None:
        """Edit or delete a message (EditRefused when not allowed), then deliver the change to every instance."""
        ...

    async def changes_since(self, room: str, after: str, limit: int) -> list[Event]:
        """The changes logged from `after` on (gateway.chat.edits), oldest first: for a resuming client."""
        ...

    async def mark_read(self, user_id: str, room: str, message_id: str) -> None:
        """The user has read `room` up to `message_id` (never moves back)."""
        ...

    async def rooms(self, user_id: str, name: str) -> list[RoomSummary]:
        """Rooms with recent messages, newest first, with this user's unread counts (gateway.chat.rooms)."""
        ...

    async def present(self, room: str) -> list[dict[str, str]]:
        """Who is in the room now, on every instance."""
        ...

    async def enter(self, room: str, user: dict[str, str], connection: str,
                    listed: bool = True) -> list[dict[str, str]]:
        """Count a connection in; announce `join` on a user's first. Returns who is present (nothing, and
        costs nothing, when not `listed`: the room's next presence batch brings the list)."""
        ...

    async def exit(self, room: str, user: dict[str, str], connection: str) -> None:
        """Count a connection out; announce `leave` after a user's last."""
        ...

    async def kick(self, user_id: str, code: int, reason: str) -> None:
        """Close every socket of a user, on every instance (logout, lost access)."""
        ...

    async def announce(self, event: Event) -> None:
        """Deliver a control event to every instance's hub, this one's included."""
        ...

    async def healthy(self) -> bool: ...


class MemoryBroker:
    """One process: presence in memory, history durable in SQLite."""

    def __init__(self, history: SqliteHistory) -> None:
        self.history = history
        self._deliver: Deliver = lambda event: None
        self._present: dict[str, dict[str, tuple[dict[str, str], set[str]]]] = {}

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        await self.history.open()

    async def stop(self) -> None:
        await self.history.close()

    async def publish(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        stored = await self.history.append(room, user, text, client_id)
        if not stored.duplicate:
            self._deliver(stored.message)
        return stored

    async def page(self, room: str, after: str | None, limit: int) -> Page:
        return await self.history.page(room, after, limit)

    async def page_text(self, room: str, after: str, limit: int) -> TextPage:
        return await self.history.page_text(room, after, limit)

    async def page_before(self, room: str, before: str, limit: int) -> Page:
        return await self.history.page_before(room, before, limit)

    async def change(self, room: str, change: Change) -> None:
        self._deliver(await self.history.change(room, change))

    async def changes_since(self, room: str, after: str, limit: int) -> list[Event]:
        return await self.history.changes_since(room, after, limit)

    async def mark_read(self, user_id: str, room: str, message_id: str) -> None:
        await self.history.mark_read(user_id, room, message_id)

    async def rooms(self, user_id: str, name: str) -> list[RoomSummary]:
        return await self.history.rooms(user_id, name)

    async def present(self, room: str) -> list[dict[str, str]]:
        return [entry[0] for entry in self._present.get(room, {}).values()]

    async def enter(self, room: str, user: dict[str, str], connection: str,
                    listed: bool = True) -> list[dict[str, str]]:
        users = self._present.setdefault(room, {})
        known = users.get(user["id"])
        if known is None:
            users[user["id"]] = (user, {connection})
            self._deliver({"type": "join", "room": room, "user": user})
        else:
            known[1].add(connection)
        return [entry[0] for entry in users.values()] if listed else []

    async def exit(self, room: str, user: dict[str, str], connection: str) -> None:
        users = self._present.get(room, {})
        known = users.get(user["id"])
        if known is None:
            return
        known[1].discard(connection)
        if not known[1]:
            del users[user["id"]]
            if not users:
                self._present.pop(room, None)
            self._deliver({"type": "leave", "room": room, "user": user})

    async def kick(self, user_id: str, code: int, reason: str) -> None:
        self._deliver({"type": "_kick", "user_id": user_id, "code": code, "reason": reason})

    async def announce(self, event: Event) -> None:
        self._deliver(event)

    async def healthy(self) -> bool:
        return True
