"""Reading rooms from one Redis (or the primary Sentinel names): one XREAD BLOCK over the streams of every
room with local sockets, and one subscription to the events channel. (A Cluster: gateway.chat.redis_shards.)"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from gateway.chat.redis_keys import RoomKeys
from gateway.redis_connect import REDIS_ERRORS, decoded

log = logging.getLogger("gateway.redis")


async def _back_off(failures: int, warning: str, exc: BaseException) -> None:
    """Log `warning` (%s: the error's type), then wait before the next try: 0.4 s after the first failure
    in a row, doubling with each further one, at most 5 s."""
    log.warning(warning, type(exc).__name__)
    await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))


class StreamReader:
    def __init__(self, client: Any, keys: RoomKeys, rooms: dict[str, int], positions: dict[str, str],
                 wake: asyncio.Event, block_ms: int, on_entry: Callable[[str, Any, Any], None],
                 on_event: Callable[[dict[str, Any]], None]) -> None:
        self.client = client  # its own pool: XREAD BLOCK holds a connection
        self.keys = keys
        self.rooms = rooms  # room -> local sockets (the broker's)
        self.positions = positions  # stream key -> last id delivered (the broker's)
        self.wake = wake  # set when a room is added
        self.block_ms = block_ms
        self._on_entry = on_entry
        self._on_event = on_event

    async def start(self) -> list[asyncio.Task[None]]:
        """Subscribed before this returns, so nothing announced after it is missed."""
        pubsub = await self._subscribe()
        return [asyncio.create_task(self._read_streams(), name="redis-streams"),
                asyncio.create_task(self._read_events(pubsub), name="redis-events")]

    async def _read_streams(self) -> None:
        """One XREAD loop for all rooms with local sockets; new rooms are picked up within block_ms."""
        failures = 0
        while True:
            streams = {self.keys.stream(room): self.positions.get(self.keys.stream(room), "$") for room in self.rooms}
            if not streams:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                answer = await self.client.xread(streams, block=self.block_ms)
                failures = 0
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                failures += 1
                await _back_off(failures, "Redis stream read failed (%s); retrying", exc)
                continue
            for stream_key, entries in answer or []:
                for entry_id, fields in entries:
                    self._on_entry(decoded(stream_key), entry_id, fields)

    async def _subscribe(self) -> Any:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self.keys.events)
        return pubsub

    async def _read_events(self, pubsub: Any) -> None:
        """Listen on the events channel; subscribed before start() returns, so nothing announced after
        that is missed (and after a lost connection, resubscribe with backoff)."""
        failures = 0
        while True:
            try:
                if pubsub is None:
                    pubsub = await self._subscribe()
                failures = 0
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        self._on_event(event)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                failures += 1
                await _back_off(failures, "Redis event subscription lost (%s); resubscribing", exc)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except REDIS_ERRORS:
                        pass
                    pubsub = None
