"""How much history the chat may keep: rooms in total, rooms one user may start a day, bytes in total.

A room is started by the first message stored in it (joining starts nothing). A resend of a message already
stored is never refused. The embedded store checks all three inside its write transaction; the Redis broker
checks the two room limits in its publish script (its bytes are bounded by rooms times GATEWAY_HISTORY_LIMIT
and Redis's own `maxmemory`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gateway.errors import GatewayError

DAY_MS = 86_400_000

ROOMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY,
    creator TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_creator ON rooms (creator, created_ms);
"""


class HistoryFull(GatewayError):
    """A message the history limits refuse: not stored, not acked; the socket stays open."""

    code = "history_full"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class HistoryQuota:
    max_rooms: int = 10_000
    rooms_per_user: int = 50  # new rooms one user may start in 24 hours
    max_bytes: int = 1 << 30

    def too_many_rooms(self, rooms: int) -> HistoryFull | None:
        if rooms >= self.max_rooms:
            return HistoryFull(f"the chat keeps at most {self.max_rooms} rooms: post in one that exists")
        return None

    def too_many_for(self, started_today: int) -> HistoryFull | None:
        if started_today >= self.rooms_per_user:
            return HistoryFull(f"you started {self.rooms_per_user} rooms in the last 24 hours: post in a room "
                               "that exists, or wait")
        return None

    def too_many_bytes(self, stored: int, adding: int) -> HistoryFull | None:
        if stored + adding > self.max_bytes:
            return HistoryFull("the chat's history is full: ask the operator to raise GATEWAY_HISTORY_MAX_BYTES")
        return None


class RoomLedger:
    """The embedded store's accounting, in the same SQLite file and transaction as the messages."""

    def __init__(self, quota: HistoryQuota) -> None:
        self.quota = quota
        self.bytes = 0

    def open(self, db: sqlite3.Connection) -> None:
        db.executescript(ROOMS_SCHEMA)
        if db.execute("SELECT COUNT(*) FROM rooms").fetchone()[0] == 0:  # a store made before the ledger
            db.execute("INSERT OR IGNORE INTO rooms (room, creator, created_ms, bytes) "
                       "SELECT room, '', MIN(ms), SUM(LENGTH(CAST(body AS BLOB))) FROM messages GROUP BY room")
        self.bytes = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM rooms").fetchone()[0]

    def admit(self, db: sqlite3.Connection, room: str, user_id: str, now_ms: int) -> None:
        """Raise HistoryFull when `room` is new and over a room limit, else record it (in the caller's
        transaction)."""
        if db.execute("SELECT 1 FROM rooms WHERE room = ?", (room,)).fetchone() is not None:
            return
        rooms = db.execute("SELECT COUNT(*) FROM rooms").fetchone()[0]
        started = db.execute("SELECT COUNT(*) FROM rooms WHERE creator = ? AND created_ms > ?",
                             (user_id, now_ms - DAY_MS)).fetchone()[0]
        refusal = self.quota.too_many_rooms(rooms) or self.quota.too_many_for(started)
        if refusal is not None:
            raise refusal
        db.execute("INSERT INTO rooms (room, creator, created_ms, bytes) VALUES (?, ?, ?, 0)",
                   (room, user_id, now_ms))

    def grow(self, db: sqlite3.Connection, room: str, delta: int) -> None:
        """Raise HistoryFull when `delta` more bytes (stored minus pruned) would pass the total, else record
        them. Checked after the prune: a room at its bound keeps rolling over in a full history."""
        if delta > 0:
            refusal = self.quota.too_many_bytes(self.bytes, delta)
            if refusal is not None:
                raise refusal
        db.execute("UPDATE rooms SET bytes = bytes + ? WHERE room = ?", (delta, room))

    def committed(self, delta: int) -> None:
        self.bytes += delta
