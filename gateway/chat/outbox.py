"""One bounded send queue per socket: fan-out never waits on a slow client."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

TOO_SLOW = 4408


class Outbox:
    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.sending = False  # the writer holds a frame it has not written yet
        # Once the socket is accepted: write(prebuilt frame bytes) -> bool, straight to the transport.
        self.direct: Callable[[bytes], bool] | None = None

    def put(self, frame: str) -> None:
        if self.close_code is not None:
            return
        if len(self._frames) >= self.limit:
            # The client resumes from its last id after reconnecting; nothing acked is lost.
            self._frames.clear()
            self.close(TOO_SLOW, "too slow: send queue overflow")
            return
        self._frames.append(frame)
        self._ready.set()

    def prepend(self, frames: list[str]) -> None:
        """Queue frames ahead of what is waiting (the welcome and history of a socket that just joined)."""
        if self.close_code is None:
            self._frames.extendleft(reversed(frames))
            self._ready.set()

    def close(self, code: int, reason: str = "") -> None:
        """Ask the writer to close after the frames already queued."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._ready.set()

    async def get(self) -> str | None:
        """The next frame to send, or None once the socket should close."""
        while not self._frames:
            if self.close_code is not None:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._frames.popleft()

    def idle(self) -> bool:
        """Nothing queued, nothing being written: a frame written directly now cannot overtake another."""
        return not self._frames and not self.sending and self.close_code is None

    def __len__(self) -> int:
        return len(self._frames)
