"""The newest messages of each room with local sockets, kept in memory: a join reads no store.

A room's tail is filled once from the store (on its first join) and then from every message delivered
to this instance; it is dropped when the room's last local socket leaves, since from then on this
instance no longer hears of the room's messages. Bounded in messages and in bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.chat.frames import encode
from gateway.chat.history import Page, parse_id
from gateway.chat.outbox import frame_size

Message = dict[str, Any]
ReadPage = Callable[[str, int], Awaitable[Page]]  # (room, limit) -> the newest `limit` messages


def weight(message: Message) -> int:
    """About the bytes a message takes in a frame: the text and the name dominate; ids, keys and
    punctuation take about 120."""
    return frame_size(message["text"]) + frame_size(message["user"]["name"]) + 120


def encode_history(page: Page) -> str:
    return encode({"type": "history", "messages": page.messages, "truncated": page.truncated})


def _fields(event: Message) -> Message:
    """What an `edit` or `delete` event changes in a message."""
    if event["type"] == "delete":
        return {"text": "", "deleted": True, "deleted_at": event["deleted_at"]}
    return {"text": event["text"], "edited_at": event["edited_at"]}


@dataclass
class _Tail:
    messages: deque[tuple[Message, int]] = field(default_factory=deque)
    bytes: int = 0
    truncated: bool = False  # older messages exist than the ones kept here
    filling: list[Message] | None = None  # delivered while the store was being read
    ready: asyncio.Future[None] | None = None  # the fill under way: concurrent joins wait for it
    frame: str | None = None  # the `history` frame of these messages, encoded once for every join


class RoomTails:
    def __init__(self, read: ReadPage, size: int, max_bytes: int = 256 * 1024) -> None:
        self._read = read
        self.size = size
        self.max_bytes = max_bytes
        self._tails: dict[str, _Tail] = {}
        self.store_reads = 0

    async def page(self, room: str) -> Page:
        """The newest `size` messages of `room`, oldest first."""
        tail = self._tails.get(room)
        if tail is None:
            await self._fill(room)
        elif tail.ready is not None:
            await asyncio.shield(tail.ready)  # one store read for a storm of joins into one room
        tail = self._tails.get(room)
        if tail is None or tail.filling is not None:  # the fill failed, or the room emptied meanwhile
            return await self._read(room, self.size)
        return Page([message for message, _ in tail.messages], tail.truncated)

    async def _fill(self, room: str) -> None:
        ready = asyncio.get_running_loop().create_future()
        tail = self._tails[room] = _Tail(filling=[], ready=ready)
        self.store_reads += 1
        try:
            page = await self._read(room, self.size)
        except BaseException:
            if self._tails.get(room) is tail:
                del self._tails[room]
            ready.set_result(None)
            raise
        if self._tails.get(room) is tail:
            seen = {message["id"] for message in page.messages}
            late = [message for message in tail.filling or () if message["id"] not in seen]
            tail.filling = None
            tail.truncated = page.truncated
            for message in sorted([*page.messages, *late], key=lambda m: parse_id(m["id"])):
                self._keep(tail, message)
        ready.set_result(None)
        tail.ready = None

    async def history_frame(self, room: str) -> str:
        """`page(room)` as a `history` frame: encoded once per change of the tail, not once per join."""
        page = await self.page(room)
        tail = self._tails.get(room)
        if tail is None or tail.filling is not None:
            return encode_history(page)
        if tail.frame is None:
            tail.frame = encode_history(page)
        return tail.frame

    def add(self, message: Message) -> None:
        """A message delivered to this instance (stored already)."""
        tail = self._tails.get(message.get("room", ""))
        if tail is None:
            return
        if tail.filling is not None:
            tail.filling.append(message)
        else:
            self._keep(tail, message)

    def _keep(self, tail: _Tail, message: Message) -> None:
        tail.frame = None
        size = weight(message)
        tail.messages.append((message, size))
        tail.bytes += size
        while tail.messages and (len(tail.messages) > self.size or tail.bytes > self.max_bytes):
            _, dropped = tail.messages.popleft()
            tail.bytes -= dropped
            tail.truncated = True

    def change(self, event: Message) -> None:
        """An edit or delete delivered to this instance: the kept copy takes it (joins show it)."""
        tail = self._tails.get(event.get("room", ""))
        if tail is None:
            return
        if tail.filling is not None:
            tail.filling = [{**kept, **_fields(event)} if kept["id"] == event["id"] else kept
                            for kept in tail.filling]
        for index, (message, size) in enumerate(tail.messages):
            if message["id"] == event["id"]:
                updated = {**message, **_fields(event)}
                new_size = weight(updated)
                tail.messages[index] = (updated, new_size)
                tail.bytes += new_size - size
                tail.frame = None
                return

    def drop(self, room: str) -> None:
        self._tails.pop(room, None)
