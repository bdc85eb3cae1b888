"""The token cookies unsealed lately, so a reconnecting browser's handshake does not decrypt its cookie
again (Fernet's AES and HMAC were about a tenth of a cookie handshake).

Keyed by a MAC of the sealed value under a key of this process (the cookie itself, a credential, is not
kept as a key); bounded in entries and in bytes. It holds only what decryption gave: every check after
it (the session's age, its anchor cookie, the deny-list, the provider) still runs on every use, and the
entry of a cookie that logs out is dropped.

The bounds hold a reconnect storm: 20,000 browsers with cookies of about 1.6 kB (a JWT access token
sealed) all fit, so the storm after a restart of one replica never cycles through an LRU that is one
cookie too small (every handshake a miss). At most 64 MiB.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class Unsealed(Generic[T]):
    def __init__(self, max_entries: int = 50_000, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._key = os.urandom(32)
        self._entries: OrderedDict[bytes, tuple[float, T, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    def _mac(self, sealed: str) -> bytes:
        return hashlib.blake2b(sealed.encode("ascii", "replace"), key=self._key, digest_size=16).digest()

    def get(self, sealed: str) -> tuple[float, T] | None:
        """(when it was sealed, what it opened to), or None when not kept."""
        entry = self._entries.get(key := self._mac(sealed))
        if entry is None:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0], entry[1]

    def put(self, sealed: str, sealed_at: float, value: T) -> None:
        size = len(sealed) + 200  # what opened weighs about the same as the sealed text, plus the entry
        if size > self.max_bytes:
            return
        key = self._mac(sealed)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        self._entries[key] = (sealed_at, value, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1][2]

    def forget(self, sealed: str) -> None:
        old = self._entries.pop(self._mac(sealed), None)
        if old is not None:
            self._bytes -= old[2]

    def __len__(self) -> int:
        return len(self._entries)
