"""Keeping an open socket honest: re-check its token when the cached answer lapses and at the session's
end; a token that expired or was revoked ends the socket (4401), provider trouble does not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.errors import Forbidden, InvalidToken, ProviderUnavailable
from gateway.tokens import Principal

log = logging.getLogger("gateway.chat")

TOKEN_EXPIRED = 4401
NOT_ALLOWED = 4403
BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class SessionEnd:
    close_code: int
    error: str  # the `error` frame's code
    message: str


async def watch_session(
    principal: Principal,
    recheck: Callable[[], Awaitable[Principal]],
    next_check: Callable[[Principal], float],
    on_trouble: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> SessionEnd:
    """Runs until the session must end; returns how. Cancel it when the socket closes for other reasons."""
    failures = 0
    while True:
        if failures:
            await sleep(BACKOFF[min(failures, len(BACKOFF)) - 1])
        else:
            await sleep(max(0.0, next_check(principal) - clock()))
        try:
            principal = await recheck()
        except InvalidToken as exc:
            return SessionEnd(TOKEN_EXPIRED, "token_expired", exc.detail)
        except Forbidden as exc:
            return SessionEnd(NOT_ALLOWED, "forbidden", exc.detail)
        except ProviderUnavailable:
            failures += 1
            if failures == 1:
                on_trouble()
            log.info("re-check of an open socket postponed: provider unavailable (attempt %d)", failures)
            continue
        failures = 0
