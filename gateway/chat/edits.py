"""Editing and deleting one's own messages (docs/protocol.md, `edit` and `delete`).

A change rewrites the stored message (so every page read later shows it) and is logged with an id of its
own, from the room's id sequence: a client resuming after id X gets, besides the messages after X, every
change logged since X to messages it already holds. The embedded store keeps both in its SQLite file,
in one transaction; the Redis broker keeps the same in Redis (gateway.chat.redis_broker).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError

EDITS_SCHEMA = """
CREATE TABLE IF NOT EXISTS edits (
    room TEXT NOT NULL,
    ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room, ms, seq)
);
"""


class EditRefused(GatewayError):
    """Not this user's message, too late, deleted already, or not kept: `error edit_refused`."""

    code = "edit_refused"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


NOT_FOUND = "no such message in this room (or it is no longer kept)"
NOT_YOURS = "you can only edit or delete your own messages"
DELETED = "this message was deleted"


@dataclass(frozen=True)
class Change:
    """What a user asks: new `text`, or None to delete."""

    message_id: str
    user_id: str
    text: str | None
    not_before_ms: int  # the edit window: messages older than this stay as they are
    window_text: str  # "15 minutes", for the refusal


def changed(message: dict[str, Any], change: Change, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the message as stored from now on, the event every socket in the room gets), or EditRefused."""
    if message["user"]["id"] != change.user_id:
        raise EditRefused(NOT_YOURS)
    if message.get("deleted"):
        raise EditRefused(DELETED)
    if int(message["ts"]) < change.not_before_ms:
        raise too_late(change)
    state, event = outcome(message["room"], message["user"], change, now_ms)
    return {**message, **state}, event


def too_late(change: Change) -> EditRefused:
    return EditRefused(f"too late: messages can be edited or deleted for {change.window_text} after sending")


def outcome(room: str, user: dict[str, str], change: Change, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the fields the stored message takes, the event every socket in the room gets)."""
    base = {"room": room, "id": change.message_id, "user": user}
    if change.text is None:
        return {"text": "", "deleted": True, "deleted_at": now_ms}, {"type": "delete", **base, "deleted_at": now_ms}
    return {"text": change.text, "edited_at": now_ms}, {"type": "edit", **base, "text": change.text,
                                                        "edited_at": now_ms}


def apply_in_sqlite(db: sqlite3.Connection, room: str, key: tuple[int, int], change: Change, now_ms: int,
                    log_id: tuple[int, int], keep: int) -> tuple[dict[str, Any], int]:
    """Rewrite the message and log the change, inside the caller's transaction: (event, bytes added)."""
    row = db.execute("SELECT body FROM messages WHERE room = ? AND ms = ? AND seq = ?", (room, *key)).fetchone()
    if row is None:
        raise EditRefused(NOT_FOUND)
    stored, event = changed(json.loads(row[0]), change, now_ms)
    body, logged = json.dumps(stored, ensure_ascii=False), json.dumps(event, ensure_ascii=False)
    db.execute("UPDATE messages SET body = ? WHERE room = ? AND ms = ? AND seq = ?", (body, room, *key))
    db.execute("INSERT INTO edits (room, ms, seq, body) VALUES (?, ?, ?, ?)", (room, *log_id, logged))
    # The log keeps as many changes per room as the room keeps messages.
    boundary = db.execute("SELECT ms, seq FROM edits WHERE room = ? ORDER BY ms DESC, seq DESC LIMIT 1 OFFSET ?",
                          (room, keep)).fetchone()
    dropped = 0
    if boundary is not None:
        args = (room, boundary[0], boundary[0], boundary[1])
        dropped = db.execute("SELECT COALESCE(SUM(LENGTH(CAST(body AS BLOB))), 0) FROM edits "
                             "WHERE room = ? AND (ms < ? OR (ms = ? AND seq <= ?))", args).fetchone()[0]
        db.execute("DELETE FROM edits WHERE room = ? AND (ms < ? OR (ms = ? AND seq <= ?))", args)
    added = len(body.encode()) - len(row[0].encode()) + len(logged.encode()) - int(dropped)
    return event, added


def changes_since(db: sqlite3.Connection, room: str, after: tuple[int, int], limit: int) -> list[dict[str, Any]]:
    """Changes logged from `after`'s millisecond on (a change in that same ms may or may not be newer: sending
    one again is harmless), oldest first, at most `limit`: for a client resuming after `after`."""
    rows = db.execute("SELECT body FROM edits WHERE room = ? AND ms >= ? ORDER BY ms, seq LIMIT ?",
                      (room, after[0], limit)).fetchall()
    return [json.loads(row[0]) for row in rows]
