"""One bounded send queue per socket: fan-out never waits on a slow client.

Bounded twice: in frames and in bytes (a few history pages weigh more than hundreds of small frames).
A queue over either bound closes its socket with 4408; the client resumes from its last id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

TOO_SLOW = 4408

# The next frame of a backlog (history pages sent ahead of live frames), or None when it is all sent.
Backlog = Callable[[], Awaitable[str | None]]


def frame_size(frame: str) -> int:
    """Bytes on the wire (UTF-8); ASCII frames, the common case, need no encoding to tell."""
    return len(frame) if frame.isascii() else len(frame.encode())


def server_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455 §5.2): the same bytes for every recipient."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class Outbox:
    # One per socket: slots, not a dict per instance (memory per idle socket, bench/README.md).
    __slots__ = ("_bytes", "_closing", "_frames", "_head", "_ready", "backlog", "close_code", "close_reason",
                 "direct", "gone", "limit", "limit_bytes", "sending")

    def __init__(self, limit: int = 256, limit_bytes: int = 1 << 20) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._head: deque[str] = deque()  # before everything: a join's welcome, history and presence
        self._frames: deque[tuple[str, int]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.gone = False  # the peer closed or vanished: nothing more is sent, not even a close frame
        self.sending = False  # the writer holds a frame it has not written yet
        self.backlog: Backlog | None = None  # history still to send before the queued frames
        # Once the socket is accepted: write(prebuilt frame bytes) -> bool, straight to the transport.
        self.direct: Callable[[bytes], bool] | None = None
        self._closing: asyncio.Event | None = None  # made by pause() only: most sockets never pause

    def put(self, frame: str, size: int | None = None) -> None:
        """Queue a frame; `size`, its UTF-8 length, when the caller knows it (fan-out computes it once)."""
        if self.close_code is not None:
            return
        size = frame_size(frame) if size is None else size
        if len(self._frames) >= self.limit or self._bytes + size > self.limit_bytes:
            # The client resumes from its last id after reconnecting; nothing acked is lost.
            self.discard_queued()
            self.backlog = None
            self.close(TOO_SLOW, "too slow: send queue overflow")
            return
        self._frames.append((frame, size))
        self._bytes += size
        self._ready.set()

    def prepend(self, frames: list[str]) -> None:
        """Queue frames ahead of what is waiting, backlog included (the welcome, history and presence of a
        socket that just joined). Not counted against the byte bound: GATEWAY_HISTORY_ON_JOIN bounds them."""
        if self.close_code is None:
            self._head.extend(frames)
            self._ready.set()

    def flush_head(self) -> None:
        """Write the head (a join's welcome, history, presence) straight to the transport in one write,
        when the socket allows it; else the writer sends it as usual."""
        if self.direct is not None and self._head and not self.sending and not self.gone:
            if self.direct(b"".join(server_frame(frame) for frame in self._head)):
                self._head.clear()

    def send_backlog(self, backlog: Backlog) -> None:
        """Send `backlog`'s frames next (after the head), ahead of the queued ones."""
        if self.close_code is None:
            self.backlog = backlog
            self._ready.set()

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to close after the frames already queued."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._ready.set()
            if self._closing is not None:
                self._closing.set()

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds` (a backlog over its budget), or less if the socket closes meanwhile: False then."""
        if self.close_code is None:
            if self._closing is None:
                self._closing = asyncio.Event()
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except TimeoutError:
                pass
        return self.close_code is None

    def abandon(self) -> None:
        """The peer is gone: stop the writer without sending anything more."""
        self.gone = True
        self.discard_queued()
        self.backlog = None
        self.close(1000, "peer gone")

    async def get(self) -> str | None:
        """The next frame to send, or None once the socket should close."""
        while True:
            if self.gone:
                return None
            if self._head:
                return self._head.popleft()
            if self.backlog is not None and self.close_code is None:
                frame = await self.backlog()
                if frame is not None and not self.gone:
                    return frame
                self.backlog = None
                continue
            if self._frames:
                frame, size = self._frames.popleft()
                self._bytes -= size
                return frame
            if self.close_code is not None:
                return None
            self._ready.clear()
            await self._ready.wait()

    def idle(self) -> bool:
        """Nothing queued, nothing being written: a frame written directly now cannot overtake another."""
        return (not self._frames and not self._head and not self.sending and self.backlog is None
                and self.close_code is None)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._head) + len(self._frames)

    def queued(self) -> list[str]:
        """What waits to be sent, in order (the backlog not read yet): for tests and diagnostics."""
        return [*self._head, *(frame for frame, _ in self._frames)]

    def discard_queued(self) -> None:
        self._head.clear()
        self._frames.clear()
        self._bytes = 0
