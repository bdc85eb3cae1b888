"""The room list a user sees: rooms with recent messages, each with its unread count (after the last id
this user read there, kept server-side) and whether an unread message mentions them.

Room rules are the caller's business (gateway.routes.rooms lists only rooms the user may enter).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

READS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reads (
    user_id TEXT NOT NULL,
    room TEXT NOT NULL,
    ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, room)
);
"""

MAX_ROOMS = 50  # the most recently active ones
UNREAD_CAP = 100  # counted up to this; the page shows "99+"
RECENT_MS = 30 * 86_400_000  # rooms quiet for longer are left out


@dataclass(frozen=True)
class RoomSummary:
    name: str
    last_id: str
    last_ts: int
    unread: int
    mention: bool

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "last_id": self.last_id, "last_ts": self.last_ts, "unread": self.unread,
                "mention": self.mention}


def mentions(text: str, name: str) -> bool:
    """`@name` in `text` (any case), not inside a longer word: how a message mentions a user."""
    if not name.strip():
        return False
    return re.search(r"(?<![\w@])@" + re.escape(name) + r"(?!\w)", text, re.IGNORECASE) is not None


def summary(room: str, last: dict[str, Any], unread: list[dict[str, Any]], user_id: str, name: str) -> RoomSummary:
    """From the room's newest message and the messages after the user's last read (capped)."""
    theirs = [message for message in unread if message["user"]["id"] != user_id and not message.get("deleted")]
    return RoomSummary(room, last["id"], int(last["ts"]), len(theirs),
                       any(mentions(message["text"], name) for message in theirs))


READ_KEPT_MS = 90 * 86_400_000  # a mark older than this is forgotten (its room shows as unread again)


def sqlite_mark_read(db: sqlite3.Connection, user_id: str, room: str, key: tuple[int, int]) -> None:
    """Keep the newest id read: a tab that was behind never moves the mark back. This user's marks older
    than 90 days go meanwhile, so the table holds about one row per user and room in use."""
    db.execute("DELETE FROM reads WHERE user_id = ? AND ms < ?", (user_id, key[0] - READ_KEPT_MS))
    db.execute("INSERT INTO reads (user_id, room, ms, seq) VALUES (?, ?, ?, ?) ON CONFLICT(user_id, room) DO "
               "UPDATE SET ms = excluded.ms, seq = excluded.seq WHERE excluded.ms > reads.ms OR "
               "(excluded.ms = reads.ms AND excluded.seq > reads.seq)", (user_id, room, *key))
