"""A resume's history, sent a page at a time as the socket drains, within the user's byte budget.

Each page is read from the store only when the socket has written the one before, so a resume costs one
page of memory however long the room's history is. Pages are bounded in messages and in bytes, so no
single page holds the event loop for long; and all of one user's resumes together get at most
`GATEWAY_RESUME_BYTE_RATE` bytes a second (after a burst), so one user asking again and again for a
long history cannot take the loop from everyone else. A resume over its budget waits; it is not refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.chat.broker import Broker
from gateway.chat.frames import error_frame
from gateway.chat.history import StoreUnavailable, TextPage
from gateway.limits import TokenBucket

# Sleep up to this long, or less when the socket closes; False when it closes.
Pause = Callable[[float], Awaitable[bool]]


def fit(page: TextPage, max_bytes: int) -> tuple[list[str], str | None, bool]:
    """(bodies, last id, more) of `page` cut to `max_bytes` of message text (always one message)."""
    total = 0
    for count, body in enumerate(page.bodies):
        total += len(body)
        if total > max_bytes and count:
            return page.bodies[:count], page.ids[count - 1], True
    return page.bodies, page.last_id, page.more


class HistoryBacklog:
    """`history` frames of every kept message after `after`, then `then` (the join's presence)."""

    def __init__(self, broker: Broker, room: str, after: str, page_size: int, page_bytes: int,
                 budget: TokenBucket | None = None, pause: Pause | None = None, then: str | None = None) -> None:
        self._broker = broker
        self._room = room
        self._page_size = page_size
        self._page_bytes = page_bytes
        self._budget = budget
        self._pause = pause
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
        if self._budget is not None and self._pause is not None:
            # The budget may be spent below zero by the page before; wait until it is paid back.
            while (wait := -self._budget.available() / self._budget.rate) > 0:
                if not await self._pause(wait):
                    return None
        try:
            page = await self._broker.page_text(self._room, self._cursor, self._page_size)
        except StoreUnavailable:
            self._cursor = None
            return error_frame("store_unavailable", "history is unavailable; resume again later")
        bodies, last_id, more = fit(page, self._page_bytes)
        # Spliced from the stored JSON text: no decoding and encoding again on the event loop.
        truncated = "true" if page.truncated and self._first else "false"
        more = more and last_id is not None
        self._first = False
        self._cursor = last_id if more else None
        end = ',"more":true}' if more else "}"
        frame = '{"type":"history","messages":[' + ",".join(bodies) + '],"truncated":' + truncated + end
        if self._budget is not None:
            self._budget.drain(len(frame))
        return frame
