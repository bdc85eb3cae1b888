"""Token buckets: per-client-IP limits on failed sign-ins, and (later) per-user message rates."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> float:
        self._refill()
        return self._tokens

    def take(self, amount: float = 1.0) -> bool:
        self._refill()
        if self._tokens >= amount:
            self._tokens -= amount
            return True
        return False

    def drain(self, amount: float = 1.0) -> None:
        """Spend tokens even below zero (a failure already happened; it still counts)."""
        self._refill()
        self._tokens = max(-self.burst, self._tokens - amount)

    def retry_after(self, amount: float = 1.0) -> int:
        """Whole seconds until `amount` tokens are there again."""
        self._refill()
        missing = amount - self._tokens
        return max(1, math.ceil(missing / self.rate)) if missing > 0 else 0


class KeyedBuckets:
    """One bucket per key (a client address), the least recently used forgotten beyond `max_keys`."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def blocked_for(self, key: str, pending: int = 0) -> int:
        """0 when `key` may try again now, else the seconds to wait. `pending` attempts still running count
        as spent: each may yet fail."""
        bucket = self._buckets.get(key)
        available = bucket.available() if bucket is not None else self.burst
        missing = 1 + pending - available
        return 0 if missing <= 0 else max(1, math.ceil(missing / self.rate))

    def record_failure(self, key: str) -> None:
        self.bucket(key).drain()
