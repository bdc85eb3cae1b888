"""The validation cache: bounded (LRU), time-limited, single-flight. Keys are hashes, never tokens.

A valid answer is kept until the earlier of the token's expiry and `valid_ttl`; an invalid one for
`invalid_ttl`; provider trouble is not kept at all (the next caller asks again). Concurrent lookups of
one key share one provider call. The deny-list refuses signed-out tokens until they expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import CredentialError, Forbidden, InvalidToken
from gateway.tokens import Principal


def cache_key(provider: str, token: str) -> str:
    return hashlib.sha256(f"{provider}\0{token}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    principal: Principal | None  # None: the provider said "invalid"
    error: CredentialError | None
    until: float


class SharedStore(Protocol):
    """What several instances share (Redis): validation answers and the deny-list. Failures inside are
    swallowed by the store: without it, each instance simply asks the provider itself."""

    async def fetch(self, key: str) -> Entry | None: ...

    async def keep(self, key: str, entry: Entry) -> None: ...

    async def deny(self, token_key: str, until: float) -> None: ...


class DenyStore(Protocol):
    """Where the deny-list is kept beyond this process: Redis (shared, gateway.shared) or, with the memory
    broker, the SQLite file (survives a restart, gateway.denylist_store). Failures are swallowed there."""

    async def deny(self, token_key: str, until: float) -> None: ...


class ValidationCache:
    def __init__(
        self,
        valid_ttl: float = 60.0,
        invalid_ttl: float = 10.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
        shared: SharedStore | None = None,
    ) -> None:
        self.valid_ttl = valid_ttl
        self.invalid_ttl = invalid_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Principal]] = {}
        self.shared = shared
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ValidationCache(entries={len(self._entries)}, hits={self.hits}, misses={self.misses})"

    def lookup(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.until <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def answered(self, key: str) -> bool:
        """True when `key` costs no provider call now: an answer is kept, or a call for it is running."""
        return key in self._inflight or self.lookup(key) is not None

    def expires(self, key: str) -> float | None:
        """When the cached answer for `key` lapses (the live socket re-checks then)."""
        entry = self._entries.get(key)
        return entry.until if entry else None

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def _store(self, key: str, entry: Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _keep_valid(self, key: str, principal: Principal) -> Entry | None:
        now = self._clock()
        until = now + self.valid_ttl
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        if until <= now:
            return None
        entry = Entry(principal, None, until)
        self._store(key, entry)
        return entry

    async def get_or_validate(self, key: str, validate: Callable[[], Awaitable[Principal]]) -> Principal:
        entry = self.lookup(key)
        if entry is not None:
            self.hits += 1
            if entry.principal is not None:
                return entry.principal
            # A fresh exception each time (same class and message): re-raising one object grows its traceback.
            error = entry.error or InvalidToken("the provider does not accept this token")
            raise type(error)(error.detail)
        task = self._inflight.get(key)
        if task is None:
            self.misses += 1
            # A task of its own: a caller that goes away does not cancel the others' provider call.
            task = asyncio.ensure_future(self._validate(key, validate))
            task.add_done_callback(_retrieve)
            self._inflight[key] = task
        else:
            self.hits += 1
        return await asyncio.shield(task)

    async def _validate(self, key: str, validate: Callable[[], Awaitable[Principal]]) -> Principal:
        try:
            if self.shared is not None:
                known = await self.shared.fetch(key)  # another instance asked the provider already
                if known is not None and known.until > self._clock():
                    self._store(key, known)
                    if known.principal is not None:
                        return known.principal
                    error = known.error or InvalidToken("the provider does not accept this token")
                    raise type(error)(error.detail)
            try:
                principal = await validate()
            except (InvalidToken, Forbidden) as exc:  # "no" is remembered briefly; provider trouble never
                entry = Entry(None, exc, self._clock() + self.invalid_ttl)
                self._store(key, entry)
                if self.shared is not None:
                    await self.shared.keep(key, entry)
                raise
            kept = self._keep_valid(key, principal)
            if kept is not None and self.shared is not None:
                await self.shared.keep(key, kept)
            return principal
        finally:
            self._inflight.pop(key, None)


class DenyList:
    """Tokens refused until a given time whatever the provider says: signed out, while a copy (a bot's,
    a stolen one) may still be valid at the provider, and whole sign-ins (gateway.authenticator's
    `end_session`). Looked up in this process; each entry is also kept in a `shared` store, which
    instances started later load."""

    PRUNE_ABOVE = 1024

    def __init__(self, clock: Callable[[], float] = time.time, shared: DenyStore | None = None) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self.shared = shared

    def __len__(self) -> int:
        return len(self._until)

    async def add(self, token: str, until: float) -> None:
        key = _token_key(token)
        self.remember(key, until)
        if self.shared is not None:
            await self.shared.deny(key, until)  # every instance hears of it, and later ones load it

    def remember(self, key: str, until: float) -> None:
        now = self._clock()
        if len(self._until) >= self.PRUNE_ABOVE:
            self._until = {k: end for k, end in self._until.items() if end > now}
        if until > now:
            self._until[key] = max(until, self._until.get(key, 0.0))

    async def denied(self, token: str) -> bool:
        return self.until(token) is not None

    def until(self, token: str) -> float | None:
        """When the entry for `token` lapses, or None when there is none in force."""
        if not self._until:  # the usual case costs nothing
            return None
        key = _token_key(token)
        until = self._until.get(key)
        if until is not None and until <= self._clock():
            del self._until[key]
            return None
        return until


def _token_key(token: str) -> str:
    """Whichever provider a copy of the token is routed to, it is the same token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _retrieve(task: asyncio.Future[Principal]) -> None:
    """Mark the outcome seen, so an error nobody awaited any more is not reported as lost."""
    if not task.cancelled():
        task.exception()
