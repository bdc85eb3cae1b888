"""The logout deny-list kept in SQLite (memory broker): reloaded after a restart, lapsed entries dropped,
its own table in the history's file beside the history, and clear errors."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.cache import DenyList
from gateway.chat.history import SqliteHistory
from gateway.denylist_store import DenyStoreUnavailable, SqliteDenyStore

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_entries_survive_a_reopen_and_lapsed_ones_are_dropped(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "history.sqlite3"
    store = SqliteDenyStore(path, clock)
    denied = DenyList(clock, shared=store)
    await store.open(denied)
    await denied.add("token-a", T0 + 100)
    await denied.add("token-b", T0 + 10)
    await store.close()

    clock.now = T0 + 50  # token-b lapsed while the gateway was down
    reopened = DenyList(clock)
    store = SqliteDenyStore(path, clock)
    await store.open(reopened)
    assert await reopened.denied("token-a")
    assert not await reopened.denied("token-b")
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM logout_deny_list").fetchone() == (1,)  # and gone from the disk
        keys = [row[0] for row in db.execute("SELECT key FROM logout_deny_list")]
    assert "token-a" not in keys[0]  # a hash, never the token


@pytest.mark.anyio
async def test_a_later_deny_keeps_the_later_end(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteDenyStore(tmp_path / "h.sqlite3", clock)
    await store.open(DenyList(clock))
    await store.deny("k", T0 + 100)
    await store.deny("k", T0 + 50)  # a second logout of the same session, say: the earlier end does not win
    await store.close()
    clock.now = T0 + 75
    loaded = DenyList(clock)
    store = SqliteDenyStore(tmp_path / "h.sqlite3", clock)
    await store.open(loaded)
    await store.close()
    assert len(loaded) == 1 and loaded._until["k"] == T0 + 100


@pytest.mark.anyio
async def test_the_deny_list_shares_the_history_file_without_disturbing_it(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    history = SqliteHistory(path)
    await history.open()
    store = SqliteDenyStore(path)
    await store.open(DenyList())
    await history.append("lobby", {"id": "idp:a", "name": "A"}, "before", None)
    await store.deny("k", T0 * 2)
    await history.append("lobby", {"id": "idp:a", "name": "A"}, "after", None)
    page = await history.page("lobby", None, 10)
    assert [m["text"] for m in page.messages] == ["before", "after"]
    await store.close()
    await history.close()
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"messages", "logout_deny_list"} <= tables


@pytest.mark.anyio
async def test_a_path_that_cannot_be_opened_names_the_setting(tmp_path: Path) -> None:
    store = SqliteDenyStore(tmp_path)  # a directory
    with pytest.raises(DenyStoreUnavailable, match="GATEWAY_HISTORY_PATH"):
        await store.open(DenyList())
    await store.close()


@pytest.mark.anyio
async def test_a_failed_write_is_logged_and_the_logout_still_holds(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteDenyStore(tmp_path / "h.sqlite3")  # never opened: every write fails
    denied = DenyList(shared=store)
    with caplog.at_level(logging.ERROR, logger="gateway.auth"):
        await denied.add("secret-token-value", T0 * 2)
    assert await denied.denied("secret-token-value")
    assert "could not keep a logout on disk" in caplog.text and "secret-token-value" not in caplog.text
    await store.close()
