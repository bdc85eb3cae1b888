"""Rooms and fan-out. A message is numbered, encoded once, then queued to every socket in its room."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.chat.frames import encode
from gateway.chat.outbox import Outbox

RECENT_LIMIT = 50


@dataclass(eq=False)
class Member:
    room: str
    user: dict[str, str]  # {"id", "name"}
    outbox: Outbox = field(default_factory=Outbox)


class Hub:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rooms: dict[str, set[Member]] = {}
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self._last = (0, -1)

    def next_id(self) -> str:
        """`<ms>-<seq>`, strictly increasing even if the clock stands still or steps back."""
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last
        self._last = (last_ms, last_seq + 1) if ms <= last_ms else (ms, 0)
        return f"{self._last[0]}-{self._last[1]}"

    def join(self, member: Member) -> list[dict[str, Any]]:
        """Add a socket to its room; returns the room's recent messages, oldest first."""
        self._rooms.setdefault(member.room, set()).add(member)
        return list(self._recent.get(member.room, ()))

    def leave(self, member: Member) -> None:
        members = self._rooms.get(member.room)
        if members is not None:
            members.discard(member)
            if not members:
                del self._rooms[member.room]

    def members(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def publish(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> dict[str, Any]:
        now_ms = int(self._clock() * 1000)
        message: dict[str, Any] = {
            "type": "message", "id": self.next_id(), "room": room, "user": user, "text": text, "ts": now_ms,
        }
        if client_id is not None:
            message["client_id"] = client_id
        self._recent.setdefault(room, deque(maxlen=RECENT_LIMIT)).append(message)
        frame = encode(message)
        for member in list(self._rooms.get(room, ())):
            member.outbox.put(frame)
        return message
