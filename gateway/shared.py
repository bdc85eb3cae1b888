"""What several instances share through Redis besides the chat: validation answers (so N instances cost
the provider about one call per token) and the logout deny-list. Keys are hashes; values hold no token."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.cache import DenyList, Entry
from gateway.errors import Forbidden, InsufficientScope, InvalidToken
from gateway.redis_connect import REDIS_ERRORS
from gateway.tokens import Principal

log = logging.getLogger("gateway.redis")
LOAD_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ValueError)

ERRORS: dict[str, type[InvalidToken] | type[Forbidden]] = {
    "invalid_token": InvalidToken, "forbidden": Forbidden, "insufficient_scope": InsufficientScope,
}


class RedisShared:
    def __init__(self, redis: Any, prefix: str, announce: Callable[[dict[str, Any]], Awaitable[None]],
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.prefix = prefix
        self._announce = announce
        self._clock = clock

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    async def fetch(self, key: str) -> Entry | None:
        try:
            raw = await self.redis.get(self._key("auth", key))
        except REDIS_ERRORS:
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if "principal" in data:
                return Entry(Principal.from_dict(data["principal"]), None, float(data["until"]))
            error = ERRORS.get(data["error"], InvalidToken)(str(data["detail"]))
            return Entry(None, error, float(data["until"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def keep(self, key: str, entry: Entry) -> None:
        ttl_ms = int((entry.until - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        if entry.principal is not None:
            data: dict[str, Any] = {"principal": entry.principal.to_dict(), "until": entry.until}
        else:
            error = entry.error or InvalidToken("the provider does not accept this token")
            data = {"error": error.code, "detail": error.detail, "until": entry.until}
        try:
            await self.redis.set(self._key("auth", key), json.dumps(data), px=ttl_ms)
        except REDIS_ERRORS:
            log.warning("could not share a validation answer in Redis; instances will ask the provider")

    async def deny(self, token_key: str, until: float) -> None:
        ttl_ms = int((until - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        try:
            await self.redis.set(self._key("deny", token_key), str(until), px=ttl_ms)
            await self._announce({"type": "_deny", "key": token_key, "until": until})
        except REDIS_ERRORS:
            log.error("could not share a logout with the other instances: Redis unreachable")

    async def claim(self, key: str, until: float) -> bool | None:
        """A logout token's jti, spent once across instances (gateway.replay)."""
        ttl_ms = max(1, int((until - self._clock()) * 1000))
        try:
            return bool(await self.redis.set(self._key("jti", key), "1", px=ttl_ms, nx=True))
        except REDIS_ERRORS:
            return None

    async def load_denied(self, denied: DenyList) -> None:
        """An instance that starts late learns the logouts still in force."""
        try:
            async for raw in self.redis.scan_iter(match=self._key("deny", "*"), count=500):
                key = raw.decode() if isinstance(raw, bytes) else str(raw)
                until = await self.redis.get(key)
                if until is not None:
                    denied.remember(key.rsplit(":", 1)[1], float(until))
        except LOAD_ERRORS:
            log.warning("could not load the shared deny-list from Redis")
