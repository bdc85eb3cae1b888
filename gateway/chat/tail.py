"""The newest messages of each room with local sockets, kept in memory: a join reads no store.

A room's tail is filled once from the store (on its first join) and then from every message delivered
to this instance; it is dropped when the room's last local socket leaves, since from then on this
instance no longer hears of the room's messages. Bounded in messages and in bytes.

A reconnecting client's `?after=` is answered from the tail too when the tail holds every message after
that point: in a reconnect storm, thousands of resumes then read no store (SQLite's reads run on one
thread, which a busy event loop lets run only between its own turns).
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
ReadChanges = Callable[[], Awaitable[list[Message]]]  # a room's edits and deletes since some point


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
    since: tuple[str, str] | None = None  # (after, its `history` frame): a storm's resumes share one point
    changes: tuple[str, list[str]] | None = None  # (after, the edit and delete frames since): the same
    changes_seen: int = 0  # edits and deletes delivered so far (a read that overlapped one is not kept)
    # The read of `changes` under way: (after, changes_seen when it began, the read); joins share it.
    changes_reading: tuple[str, int, asyncio.Task[list[str]]] | None = None


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

    async def history_after(self, room: str, after: str, max_messages: int, max_bytes: int) -> str | None:
        """The `history` frame of every message of `room` after `after` when the tail holds them all and
        they fit one resume page (`max_messages`, about `max_bytes`); None: read them from the store."""
        await self.page(room)  # filled (once) and current
        tail = self._tails.get(room)
        if tail is None or tail.filling is not None:
            return None
        if tail.since is not None and tail.since[0] == after:
            return tail.since[1]
        point = parse_id(after)
        kept = tail.messages
        if tail.truncated and (not kept or parse_id(kept[0][0]["id"]) > point):
            return None  # older messages than these exist, and some may come after `after`
        newer: list[Message] = []
        size = 0
        for message, bytes_ in reversed(kept):
            if parse_id(message["id"]) <= point:
                break
            newer.append(message)
            size += bytes_
            if len(newer) > max_messages or size > max_bytes:
                return None  # more than one page: the store sends them page by page
        newer.reverse()
        frame = encode_history(Page(newer, False))
        tail.since = (after, frame)
        return frame

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
        tail.frame = tail.since = None
        size = weight(message)
        tail.messages.append((message, size))
        tail.bytes += size
        while tail.messages and (len(tail.messages) > self.size or tail.bytes > self.max_bytes):
            _, dropped = tail.messages.popleft()
            tail.bytes -= dropped
            tail.truncated = True

    async def changes_since(self, room: str, after: str, read: ReadChanges) -> list[str]:
        """The edit and delete frames logged since `after` (`read` asks the store), kept for the next
        socket that resumes from the same point until the room's next edit or delete: a reconnect storm
        reads them once per room, not once per socket, and the joins that come while that one read is
        under way wait for it (unless an edit or delete came meanwhile, which the read may have missed)."""
        tail = self._tails.get(room)
        if tail is None:
            return await self._read_changes(read)
        if tail.changes is not None and tail.changes[0] == after:
            return tail.changes[1]
        reading = tail.changes_reading
        if reading is None or reading[0] != after or reading[1] != tail.changes_seen:
            task = asyncio.ensure_future(self._read_changes(read))
            task.add_done_callback(_retrieve)
            reading = tail.changes_reading = (after, tail.changes_seen, task)
        try:
            frames = await asyncio.shield(reading[2])
        finally:
            tail = self._tails.get(room)
            if tail is not None and tail.changes_reading is reading and reading[2].done():
                tail.changes_reading = None  # done, or failed: the next join reads again
        if tail is not None and tail.changes_seen == reading[1]:
            tail.changes = (after, frames)
        return frames

    @staticmethod
    async def _read_changes(read: ReadChanges) -> list[str]:
        return [encode(event) for event in await read()]

    def change(self, event: Message) -> None:
        """An edit or delete delivered to this instance: the kept copy takes it (joins show it)."""
        tail = self._tails.get(event.get("room", ""))
        if tail is None:
            return
        tail.changes = None
        tail.changes_seen += 1
        if tail.filling is not None:
            tail.filling = [{**kept, **_fields(event)} if kept["id"] == event["id"] else kept
                            for kept in tail.filling]
        for index, (message, size) in enumerate(tail.messages):
            if message["id"] == event["id"]:
                updated = {**message, **_fields(event)}
                new_size = weight(updated)
                tail.messages[index] = (updated, new_size)
                tail.bytes += new_size - size
                tail.frame = tail.since = None
                return

    def drop(self, room: str) -> None:
        self._tails.pop(room, None)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A shared read's failure goes to the joins that waited for it; none left means nobody to tell."""
    if not task.cancelled():
        task.exception()
