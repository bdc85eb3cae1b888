"""A resume's history, sent a page at a time as the socket drains (gateway.chat.hub)."""

from __future__ import annotations

from gateway.chat.broker import Broker
from gateway.chat.frames import error_frame
from gateway.chat.history import StoreUnavailable


class HistoryBacklog:
    """`history` frames of every kept message after `after`, a page at a time, then `then` (the join's
    presence). Each page is read when the socket is ready for it, so a resume costs one page of memory
    however long the room's history is."""

    def __init__(self, broker: Broker, room: str, after: str, page_size: int, then: str | None = None) -> None:
        self._broker = broker
        self._room = room
        self._page_size = page_size
        self._then = then
        self.restart(after)

    def restart(self, after: str) -> None:
        self._cursor: str | None = after
        self._first = True

    @property
    def done(self) -> bool:
        return self._cursor is None and self._then is None

    async def __call__(self) -> str | None:
        if self._cursor is None:
            last, self._then = self._then, None
            return last
        try:
            page = await self._broker.page_text(self._room, self._cursor, self._page_size)
        except StoreUnavailable:
            self._cursor = None
            return error_frame("store_unavailable", "history is unavailable; resume again later")
        # Spliced from the stored JSON text: no decoding and encoding again on the event loop.
        truncated = "true" if page.truncated and self._first else "false"
        more = page.more and page.last_id is not None
        self._first = False
        self._cursor = page.last_id if more else None
        end = ',"more":true}' if more else "}"
        return '{"type":"history","messages":[' + ",".join(page.bodies) + '],"truncated":' + truncated + end
