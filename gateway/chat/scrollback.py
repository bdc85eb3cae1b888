"""Older pages of a room, for a client scrolling back (`history {before}`, docs/protocol.md)."""

from __future__ import annotations

from gateway.chat.frames import encode
from gateway.chat.history import Page
from gateway.chat.tail import weight


def older_frame(before: str, page: Page, max_bytes: int) -> str:
    """The `history` frame answering `history {before}`: `page` cut to its newest messages that fit in
    `max_bytes` (always one), `before` echoed so the client knows the page goes on top of what it shows."""
    messages, size = page.messages, 0
    for count, message in enumerate(reversed(messages)):
        size += weight(message)
        if count and size > max_bytes:
            messages = messages[len(messages) - count:]
            break
    return encode({"type": "history", "before": before, "messages": messages,
                   "truncated": page.truncated or len(messages) < len(page.messages)})
