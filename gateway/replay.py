"""The back-channel logout's replay cache: each logout token's `jti` is accepted once. Bounded in entries
and bytes, every entry expiring when its token would be refused as too old anyway; keys are hashes. With
Redis, claimed there too (SET NX), so a replay sent to another instance is refused as well."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("gateway.auth")

ENTRY_OVERHEAD = 100  # bytes an entry costs besides its key (dict slot, float, OrderedDict links): an estimate


class SharedClaims(Protocol):
    async def claim(self, key: str, until: float) -> bool | None:
        """True when `key` was not claimed before (now it is, until `until`), False when it was, None when
        the shared store cannot say."""
        ...


def replay_key(issuer: str, jti: str) -> str:
    return hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()


class ReplayCache:
    def __init__(self, max_entries: int = 10_000, max_bytes: int = 2 << 20, clock: Callable[[], float] = time.time,
                 shared: SharedClaims | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()  # in the order claimed
        self._bytes = 0
        self.shared = shared

    def __len__(self) -> int:
        return len(self._until)

    @property
    def bytes(self) -> int:
        return self._bytes

    async def first_use(self, key: str, until: float) -> bool:
        """Claim `key` until `until`: True the first time, False for a replay (here or, with a shared store,
        on any instance)."""
        self._prune()
        if key in self._until:
            return False
        if self.shared is not None:
            answer = await self.shared.claim(key, until)
            if answer is None:
                log.warning("logout token replay check: the shared store is unreachable; checked here only")
            elif not answer:
                self._remember(key, until)
                return False
        self._remember(key, until)
        return True

    def _remember(self, key: str, until: float) -> None:
        if key in self._until:
            return
        self._until[key] = until
        self._bytes += len(key) + ENTRY_OVERHEAD
        # Full: the oldest claims go first. Only the provider can mint logout tokens, and an entry lives
        # just as long as its token's `iat` is recent enough to pass.
        while len(self._until) > self.max_entries or self._bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        old, _ = self._until.popitem(last=False)
        self._bytes -= len(old) + ENTRY_OVERHEAD

    def _prune(self) -> None:
        now = self._clock()
        # Claimed in time order with one lifetime: the lapsed ones are at the front (nearly always).
        while self._until and next(iter(self._until.values())) <= now:
            self._drop_oldest()
