"""Presence changes coalesced per room, so a storm of N joins costs each socket a few frames, not N.

A room's changes wait until it has been quiet for `settle` seconds, or at most `max_wait` seconds since
the first one. Then one change goes out as its own `join`/`leave` frame; several go out as a batch: the
hub sends a `presence_changes` frame (who joined, who left) to the sockets that asked for those
(`?presence=changes`), and one `presence` frame with the full list, asked of the broker at that moment
(so it is exact then), to the others. The list is only asked for when some socket needs it.

While changes keep coming (a storm), each batch of a room needs twice the quiet of the one before, up
to `max_settle`, so the frames a storm costs each socket stay few however bursty its joins, and the
last batch still comes within `max_settle` of the storm's end; a room quiet for `max_wait` starts again
from `settle`.

A socket that joins while its room has changes waiting (a storm) gets its first list with that batch,
instead of a list of its own: N joins then cost one list per batch, not N lists of up to N users, and the
sockets already there get only what changed: a storm's presence bytes grow with N, not N².
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.chat.history import StoreUnavailable

log = logging.getLogger("gateway.chat")

Timer = Callable[[float, Callable[[], None]], Any]  # (delay, callback) -> a handle with .cancel()
Present = Callable[[str], Awaitable[list[dict[str, str]]]]
Send = Callable[[str, dict[str, Any]], None]  # (room, event) -> fan out to the room's sockets
# (room, the batch's latest change per user, the full list or None when nobody needs it) -> frames sent
SendBatch = Callable[[str, list[dict[str, Any]], list[dict[str, str]] | None], int]
NeedsList = Callable[[str], bool]  # does some socket of this room need the full list (not only changes)?


@dataclass
class _Pending:
    first: float  # when the first change of this batch came
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # user id -> latest join/leave event
    handle: Any = None
    list_wanted: bool = False  # a socket joined meanwhile and waits for this batch's full list
    settle: float = 0.0  # the quiet this batch waits for


class PresenceBatcher:
    def __init__(self, present: Present, send: Send, send_batch: SendBatch, needs_list: NeedsList,
                 clock: Callable[[], float], settle: float = 0.2, max_wait: float = 5.0,
                 timer: Timer | None = None, max_settle: float = 1.0) -> None:
        self._present = present
        self._send = send
        self._send_batch = send_batch
        self._needs_list = needs_list
        self._clock = clock
        self.settle = settle
        self.max_wait = max_wait
        self.max_settle = max(settle, max_settle)
        self._timer = timer
        self._pending: dict[str, _Pending] = {}
        self._last: dict[str, tuple[float, float]] = {}  # room -> (when its last batch went out, its settle)
        self._flushing: set[asyncio.Task[None]] = set()
        self.frames_sent = 0  # presence frames fanned out (each encoded once, to some or all sockets of a room)

    def change(self, event: dict[str, Any]) -> None:
        """A `join` or `leave` from the broker."""
        room = event["room"]
        if self.settle <= 0:
            self._send(room, event)
            self.frames_sent += 1
            return
        now = self._clock()
        pending = self._pending.get(room)
        if pending is None:
            pending = self._pending[room] = _Pending(now, settle=self._settle(room, now))
        pending.changes[event["user"]["id"]] = event
        if pending.handle is not None:
            pending.handle.cancel()
        delay = min(pending.settle, max(0.0, pending.first + self.max_wait - now))
        pending.handle = self._schedule(delay, lambda: self._due(room))

    def _settle(self, room: str, now: float) -> float:
        last = self._last.get(room)
        if last is None or now - last[0] >= self.max_wait:
            return self.settle
        return min(self.max_settle, 2 * last[1])  # the storm goes on: wait for twice the quiet

    def list_with_batch(self, room: str) -> bool:
        """True when `room` has changes waiting: a socket joining now gets the full list with them (and
        must not send one of its own). False: no batch is coming, send the list now."""
        pending = self._pending.get(room)
        if pending is None:
            return False
        pending.list_wanted = True
        return True

    def forget(self, room: str) -> None:
        """The room has no local socket any more: nobody to tell."""
        self._last.pop(room, None)
        pending = self._pending.pop(room, None)
        if pending is not None and pending.handle is not None:
            pending.handle.cancel()

    def _schedule(self, delay: float, callback: Callable[[], None]) -> Any:
        if self._timer is not None:
            return self._timer(delay, callback)
        return asyncio.get_running_loop().call_later(delay, callback)

    def _due(self, room: str) -> None:
        pending = self._pending.pop(room, None)
        if pending is None or not pending.changes:
            return
        self._last[room] = (self._clock(), pending.settle)
        changes = list(pending.changes.values())
        if len(changes) == 1 and not pending.list_wanted:
            self._send(room, changes[0])
            self.frames_sent += 1
            return
        if not pending.list_wanted and not self._needs_list(room):
            self.frames_sent += self._send_batch(room, changes, None)
            return
        task = asyncio.get_running_loop().create_task(self._send_list(room, changes))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send_list(self, room: str, changes: list[dict[str, Any]]) -> None:
        try:
            users = await self._present(room)
        except StoreUnavailable:
            # The list cannot be had: the changes themselves still tell the truth, in order.
            log.warning("presence list of %s unavailable; sending %d changes one by one", room, len(changes))
            for event in changes:
                self._send(room, event)
                self.frames_sent += 1
            return
        later = self._pending.pop(room, None)
        if later is not None:
            # Changes that came while the list was read (a storm's joins): the list may hold them already.
            # They go with this batch, applied to the list, so the next batch does not repeat to every
            # socket what its list just gave it (it did: half of a storm's presence bytes), and the
            # sockets waiting for that batch's list get this one.
            if later.handle is not None:
                later.handle.cancel()
            merged = {event["user"]["id"]: event for event in changes}
            merged.update(later.changes)
            changes = list(merged.values())
            users = _applied(users, later.changes.values())
        self.frames_sent += self._send_batch(room, changes, users)

    async def stop(self) -> None:
        for room in list(self._pending):
            self.forget(room)
        for task in list(self._flushing):
            task.cancel()
        await asyncio.gather(*self._flushing, return_exceptions=True)


def _applied(users: list[dict[str, str]], changes: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """`users` with each user's latest `join` or `leave` applied."""
    by_id = {user["id"]: user for user in users}
    for event in changes:
        if event["type"] == "join":
            by_id[event["user"]["id"]] = event["user"]
        else:
            by_id.pop(event["user"]["id"], None)
    return list(by_id.values())
