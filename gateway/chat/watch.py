"""Keeping an open socket honest: re-check its token when the cached answer lapses and at the session's
end; a token that expired or was revoked ends the socket (4401), provider trouble does not.

A timer per socket, not a task: the socket costs a task only while a re-check is actually running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import Forbidden, InvalidToken, ProviderUnavailable
from gateway.tokens import Principal

log = logging.getLogger("gateway.chat")

TOKEN_EXPIRED = 4401
NOT_ALLOWED = 4403
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

Timer = Callable[[float, Callable[[], None]], Any]  # (delay, callback) -> a handle with .cancel()


@dataclass(frozen=True)
class SessionEnd:
    close_code: int
    error: str  # the `error` frame's code
    message: str


class SessionWatch:
    """Calls `on_end` once when the session must end; `cancel()` when the socket closes for other reasons."""

    __slots__ = ("_cancelled", "_clock", "_failures", "_handle", "_next_check", "_on_end", "_on_trouble",
                 "_recheck", "_task", "_timer", "principal")

    def __init__(
        self,
        principal: Principal,
        recheck: Callable[[], Awaitable[Principal]],
        next_check: Callable[[Principal], float],
        on_end: Callable[[SessionEnd], None],
        on_trouble: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        timer: Timer | None = None,
    ) -> None:
        self.principal = principal
        self._recheck = recheck
        self._next_check = next_check
        self._on_end = on_end
        self._on_trouble = on_trouble
        self._clock = clock
        self._timer = timer
        self._failures = 0
        self._handle: Any = None
        self._task: asyncio.Task[None] | None = None
        self._cancelled = False

    def start(self) -> SessionWatch:
        self._arm(self._next_check(self.principal) - self._clock())
        return self

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None:
            self._task.cancel()

    def check_now(self) -> None:
        """Re-check at once, a check under way included: the socket's credentials changed (a refresh)."""
        if self._cancelled:
            return
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._check())

    def _arm(self, delay: float) -> None:
        if self._cancelled:
            return
        delay = max(0.0, delay)
        if self._timer is not None:
            self._handle = self._timer(delay, self._due)
        else:
            self._handle = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        if not self._cancelled:
            self._task = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        try:
            self.principal = await self._recheck()
        except InvalidToken as exc:
            self._on_end(SessionEnd(TOKEN_EXPIRED, "token_expired", exc.detail))
            return
        except Forbidden as exc:
            self._on_end(SessionEnd(NOT_ALLOWED, "forbidden", exc.detail))
            return
        except ProviderUnavailable:
            self._failures += 1
            if self._failures == 1:
                self._on_trouble()
            log.info("re-check of an open socket postponed: provider unavailable (attempt %d)", self._failures)
            self._arm(BACKOFF[min(self._failures, len(BACKOFF)) - 1])
            return
        finally:
            if self._task is asyncio.current_task():
                self._task = None
        self._failures = 0
        self._arm(self._next_check(self.principal) - self._clock())
