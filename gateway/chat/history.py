"""Durable chat history in SQLite: store, dedupe resends, bound per room, read back after an id.

All SQLite work runs on one dedicated thread, so the event loop never waits on the disk and access is
serialised. A message is committed (WAL, synchronous=FULL) before `append` returns: an ack means stored.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.chat.edits import EDITS_SCHEMA, Change, apply_in_sqlite, changes_since
from gateway.chat.quota import HistoryQuota, RoomLedger
from gateway.chat.rooms import MAX_ROOMS, READS_SCHEMA, RECENT_MS, UNREAD_CAP, RoomSummary, sqlite_mark_read, summary
from gateway.errors import GatewayError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    client_id TEXT,
    PRIMARY KEY (room, ms, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_resend ON messages (user_id, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS pruned (room TEXT PRIMARY KEY, ms INTEGER NOT NULL, seq INTEGER NOT NULL);
"""


class StoreUnavailable(GatewayError):
    code = "store_unavailable"


MAX_ID_PART = 2**63 - 1  # SQLite's INTEGER: a larger `after` in a resume frame raised OverflowError there


def parse_id(message_id: str) -> tuple[int, int]:
    """`<ms>-<seq>` as the integer pair it is compared as (never as strings)."""
    ms, sep, seq = message_id.partition("-")
    if not sep or len(message_id) > 40 or not all(
            part.isascii() and part.isdigit() and int(part) <= MAX_ID_PART for part in (ms, seq)):
        raise ValueError(f"message ids look like 1700000000000-0, not {message_id[:40]!r}")
    return int(ms), int(seq)


def format_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


@dataclass(frozen=True)
class Stored:
    message: dict[str, Any]
    duplicate: bool  # a resend of (user, client_id): not stored again; `message` is the first one


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    truncated: bool
    more: bool = False  # (pages after an id) newer messages follow: ask again after the last one


@dataclass(frozen=True)
class TextPage:
    """A page after an id as the JSON text of each message, for a resume's `history` frames: a store that
    keeps messages as JSON hands them on without decoding and encoding them again."""

    bodies: list[str]
    last_id: str | None
    truncated: bool
    more: bool
    ids: list[str]  # each body's id, in order


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back when it raises (HistoryFull...)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class SqliteHistory:
    def __init__(self, path: str | Path, limit_per_room: int = 10_000,
                 clock: Callable[[], float] = time.time, quota: HistoryQuota | None = None) -> None:
        self.path = str(path)
        self.limit = limit_per_room
        self.ledger = RoomLedger(quota or HistoryQuota())
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-history")
        self._db: sqlite3.Connection | None = None
        self._last = (0, -1)

    async def _run(self, work: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"chat history store failed: {exc}") from None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(SCHEMA)
        db.executescript(EDITS_SCHEMA)
        db.executescript(READS_SCHEMA)
        self.ledger.open(db)
        row = db.execute("SELECT ms, seq FROM messages ORDER BY ms DESC, seq DESC LIMIT 1").fetchone()
        if row:
            self._last = (row[0], row[1])
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        self._executor.shutdown(wait=True)

    def _next_id(self) -> tuple[int, int]:
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last
        self._last = (last_ms, last_seq + 1) if ms <= last_ms else (ms, 0)
        return self._last

    async def append(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        return await self._run(lambda: self._append(room, user, text, client_id))

    def _append(self, room: str, user: dict[str, str], text: str, client_id: str | None) -> Stored:
        db = self._conn()
        if client_id is not None:
            row = db.execute("SELECT body FROM messages WHERE user_id = ? AND client_id = ?",
                             (user["id"], client_id)).fetchone()
            if row:
                return Stored(json.loads(row[0]), duplicate=True)
        ms, seq = self._next_id()
        message: dict[str, Any] = {"type": "message", "id": f"{ms}-{seq}", "room": room, "user": user,
                                   "text": text, "ts": ms}
        if client_id is not None:
            message["client_id"] = client_id
        body = json.dumps(message, ensure_ascii=False)
        size = len(body.encode())
        with _transaction(db):
            # HistoryFull from either: rolled back, nothing stored.
            self.ledger.admit(db, room, user["id"], ms)
            db.execute("INSERT INTO messages (room, ms, seq, user_id, body, client_id) VALUES (?, ?, ?, ?, ?, ?)",
                       (room, ms, seq, user["id"], body, client_id))
            size -= self._prune(db, room)
            self.ledger.grow(db, room, size)
        self.ledger.committed(size)
        return Stored(message, duplicate=False)

    def _prune(self, db: sqlite3.Connection, room: str) -> int:
        """Drop what is over the room's bound; the bytes dropped."""
        boundary = db.execute(
            "SELECT ms, seq FROM messages WHERE room = ? ORDER BY ms DESC, seq DESC LIMIT 1 OFFSET ?",
            (room, self.limit),
        ).fetchone()
        if boundary is None:
            return 0
        dropped = db.execute(
            "SELECT COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM messages "
            "WHERE room = ? AND (ms < ? OR (ms = ? AND seq <= ?))",
            (room, boundary[0], boundary[0], boundary[1])).fetchone()[0]
        db.execute("DELETE FROM messages WHERE room = ? AND (ms < ? OR (ms = ? AND seq <= ?))",
                   (room, boundary[0], boundary[0], boundary[1]))
        db.execute("INSERT INTO pruned (room, ms, seq) VALUES (?, ?, ?) "
                   "ON CONFLICT(room) DO UPDATE SET ms = excluded.ms, seq = excluded.seq",
                   (room, boundary[0], boundary[1]))
        return int(dropped)

    async def page(self, room: str, after: str | None, limit: int) -> Page:
        """The last `limit` messages (after=None), or the first `limit` kept after `after`, oldest first."""
        after_pair = parse_id(after) if after is not None else None
        return await self._run(lambda: self._page(room, after_pair, limit))

    def _page(self, room: str, after: tuple[int, int] | None, limit: int) -> Page:
        db = self._conn()
        pruned = db.execute("SELECT ms, seq FROM pruned WHERE room = ?", (room,)).fetchone()
        if after is None:
            rows = db.execute("SELECT body FROM messages WHERE room = ? ORDER BY ms DESC, seq DESC LIMIT ?",
                              (room, limit + 1)).fetchall()
            # Older messages exist that are not sent, or were dropped to keep the room bounded.
            truncated = len(rows) > limit or pruned is not None
            return Page([json.loads(r[0]) for r in reversed(rows[:limit])], truncated)
        rows = db.execute(
            "SELECT body FROM messages WHERE room = ? AND (ms > ? OR (ms = ? AND seq > ?)) ORDER BY ms, seq LIMIT ?",
            (room, after[0], after[0], after[1], limit + 1),
        ).fetchall()
        # The resume point is gone when messages after it were dropped to keep the room bounded.
        truncated = pruned is not None and tuple(pruned) > after
        return Page([json.loads(r[0]) for r in rows[:limit]], truncated, more=len(rows) > limit)

    async def change(self, room: str, change: Change) -> dict[str, Any]:
        """Edit or delete a message (gateway.chat.edits): the event to deliver, or EditRefused."""
        key = parse_id(change.message_id)
        return await self._run(lambda: self._change(room, key, change))

    def _change(self, room: str, key: tuple[int, int], change: Change) -> dict[str, Any]:
        db = self._conn()
        log_id = self._next_id()
        with _transaction(db):
            event, added = apply_in_sqlite(db, room, key, change, log_id[0], log_id, self.limit)
            self.ledger.grow(db, room, added)
        self.ledger.committed(added)
        return event

    async def changes_since(self, room: str, after: str, limit: int) -> list[dict[str, Any]]:
        after_pair = parse_id(after)
        return await self._run(lambda: changes_since(self._conn(), room, after_pair, limit))

    async def mark_read(self, user_id: str, room: str, message_id: str) -> None:
        key = parse_id(message_id)
        await self._run(lambda: sqlite_mark_read(self._conn(), user_id, room, key))

    async def rooms(self, user_id: str, name: str) -> list[RoomSummary]:
        """The rooms with messages in the last 30 days, newest first, with this user's unread counts."""
        return await self._run(lambda: self._rooms(user_id, name))

    def _rooms(self, user_id: str, name: str) -> list[RoomSummary]:
        db = self._conn()
        since = int(self._clock() * 1000) - RECENT_MS
        # One index seek per room, in one statement; then the bodies of the few listed only.
        active = db.execute(
            "SELECT room FROM (SELECT room, "
            "(SELECT ms FROM messages m WHERE m.room = r.room ORDER BY ms DESC, seq DESC LIMIT 1) AS ms, "
            "(SELECT seq FROM messages m WHERE m.room = r.room ORDER BY ms DESC, seq DESC LIMIT 1) AS seq "
            "FROM rooms r) WHERE ms >= ? ORDER BY ms DESC, seq DESC LIMIT ?",
            (since, MAX_ROOMS)).fetchall()
        found = []
        for (room,) in active:
            last = json.loads(db.execute("SELECT body FROM messages WHERE room = ? ORDER BY ms DESC, seq DESC "
                                         "LIMIT 1", (room,)).fetchone()[0])
            read = db.execute("SELECT ms, seq FROM reads WHERE user_id = ? AND room = ?", (user_id, room)).fetchone()
            ms, seq = read if read is not None else (-1, -1)
            rows = db.execute("SELECT body FROM messages WHERE room = ? AND (ms > ? OR (ms = ? AND seq > ?)) "
                              "ORDER BY ms, seq LIMIT ?", (room, ms, ms, seq, UNREAD_CAP)).fetchall()
            found.append(summary(room, last, [json.loads(r[0]) for r in rows], user_id, name))
        return found

    async def page_before(self, room: str, before: str, limit: int) -> Page:
        """The newest `limit` messages older than `before`, oldest first; `truncated`: older ones exist (kept or
        dropped) than this page."""
        before_pair = parse_id(before)
        return await self._run(lambda: self._page_before(room, before_pair, limit))

    def _page_before(self, room: str, before: tuple[int, int], limit: int) -> Page:
        db = self._conn()
        pruned = db.execute("SELECT 1 FROM pruned WHERE room = ?", (room,)).fetchone()
        rows = db.execute(
            "SELECT body FROM messages WHERE room = ? AND (ms < ? OR (ms = ? AND seq < ?)) "
            "ORDER BY ms DESC, seq DESC LIMIT ?", (room, before[0], before[0], before[1], limit + 1)).fetchall()
        return Page([json.loads(r[0]) for r in reversed(rows[:limit])], len(rows) > limit or pruned is not None)

    async def page_text(self, room: str, after: str, limit: int) -> TextPage:
        after_pair = parse_id(after)
        return await self._run(lambda: self._page_text(room, after_pair, limit))

    def _page_text(self, room: str, after: tuple[int, int], limit: int) -> TextPage:
        db = self._conn()
        pruned = db.execute("SELECT ms, seq FROM pruned WHERE room = ?", (room,)).fetchone()
        rows = db.execute(
            "SELECT body, ms, seq FROM messages WHERE room = ? AND (ms > ? OR (ms = ? AND seq > ?)) "
            "ORDER BY ms, seq LIMIT ?", (room, after[0], after[0], after[1], limit + 1)).fetchall()
        kept = rows[:limit]
        last = f"{kept[-1][1]}-{kept[-1][2]}" if kept else None
        return TextPage([row[0] for row in kept], last, pruned is not None and tuple(pruned) > after,
                        more=len(rows) > limit,
                        ids=[f"{row[1]}-{row[2]}" for row in kept])

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("history store is not open")
        return self._db
