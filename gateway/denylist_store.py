"""The logout deny-list on disk, for the memory broker: a restart with the same keys must not bring
signed-out cookies back. (With Redis the deny-list lives there: gateway.shared.)

Its own table in the history's SQLite file (GATEWAY_HISTORY_PATH) through its own connection (WAL lets
the two share the file), on one dedicated thread: the event loop never waits on the disk. Rows hold hashes
of tokens and session ids, never a token, and the time they lapse; lapsed rows are neither loaded nor kept.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.cache import DenyList
from gateway.errors import GatewayError

T = TypeVar("T")
log = logging.getLogger("gateway.auth")

SCHEMA = """
CREATE TABLE IF NOT EXISTS logout_deny_list (key TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS logout_deny_list_until ON logout_deny_list (until);
"""


class DenyStoreUnavailable(GatewayError):
    code = "deny_store_unavailable"


class SqliteDenyStore:
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-deny-list")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def open(self, denied: DenyList) -> None:
        """Open (creating the table), drop lapsed rows, and load the rest into `denied`."""
        try:
            rows = await self._run(self._open)
        except (sqlite3.Error, OSError) as exc:
            raise DenyStoreUnavailable(f"the logout deny-list in {self.path} cannot be opened ({exc}): check "
                                       "GATEWAY_HISTORY_PATH and that the gateway may write there") from None
        for key, until in rows:
            denied.remember(key, until)

    def _open(self) -> list[tuple[str, float]]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a logout answered is a logout kept
            db.executescript(SCHEMA)
            db.execute("DELETE FROM logout_deny_list WHERE until <= ?", (self._clock(),))
            rows = db.execute("SELECT key, until FROM logout_deny_list").fetchall()
        except BaseException:
            db.close()
            raise
        self._db = db
        return [(str(key), float(until)) for key, until in rows]

    async def deny(self, token_key: str, until: float) -> None:
        """Keep one entry (the deny-list's `shared` store). A failure is logged, never raised: the logout
        still holds in this process, only not across a restart."""
        try:
            await self._run(lambda: self._deny(token_key, until))
        except sqlite3.Error as exc:
            log.error("could not keep a logout on disk (%s): it holds until this gateway restarts", exc)

    def _deny(self, key: str, until: float) -> None:
        if self._db is None:
            raise sqlite3.ProgrammingError("the deny-list store is not open")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT INTO logout_deny_list (key, until) VALUES (?, ?) ON CONFLICT(key) "
                             "DO UPDATE SET until = max(until, excluded.until)", (key, until))
            self._db.execute("DELETE FROM logout_deny_list WHERE until <= ?", (self._clock(),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await self._run(db.close)
        self._executor.shutdown(wait=True)
