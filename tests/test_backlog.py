"""A resume's history pages: bounded in bytes, and one user's resumes held to a byte budget."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.chat.backlog import fit
from gateway.chat.history import TextPage
from gateway.chat.hub import Hub, Member
from tests import test_hub
from tests.test_hub import user


async def make_hub(path: Path, **limits: Any) -> Hub:
    return await test_hub.make_hub(path, message_rate=1e6, message_burst=1e6, **limits)


async def fill(hub: Hub, room: str, count: int, size: int) -> None:
    writer = hub.member(room, user("writer"))
    await hub.join(writer)
    for i in range(count):
        await hub.post(writer, f"{i:04d}" + "x" * (size - 4), None)
    await hub.leave(writer)


async def history_pages(member: Member) -> list[tuple[float, str]]:
    """(when, frame) of each `history` frame the writer would send, until the backlog is done."""
    outbox, taken = member.outbox, []
    while True:
        frame = await asyncio.wait_for(outbox.get(), 30)
        if frame is None:
            break
        if '"type":"history"' in frame:
            taken.append((time.monotonic(), frame))
            if '"more":true' not in frame:
                break
    return taken


def texts(pages: list[tuple[float, str]]) -> list[str]:
    return [m["text"][:4] for _, frame in pages for m in json.loads(frame)["messages"]]


def test_fit_cuts_a_page_at_the_byte_bound_and_keeps_at_least_one_message() -> None:
    page = TextPage(["a" * 40, "b" * 40, "c" * 40], "3-0", truncated=False, more=False, ids=["1-0", "2-0", "3-0"])
    assert fit(page, 100) == (["a" * 40, "b" * 40], "2-0", True)
    assert fit(page, 10) == (["a" * 40], "1-0", True)  # one message, however big: never a page of none
    assert fit(page, 120) == (page.bodies, "3-0", False)  # it all fits: the store's own `more`


@pytest.mark.anyio
async def test_resume_pages_are_bounded_in_bytes_and_hold_every_message_in_order(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_page=100, history_page_bytes=8_000)
    try:
        await fill(hub, "r", 60, 1000)
        reader = hub.member("r", user("reader"))
        await hub.join(reader, after="0-0")
        pages = await history_pages(reader)
        assert texts(pages) == [f"{i:04d}" for i in range(60)]
        assert len(pages) >= 8  # 60 kB of text in pages of at most 8 kB
        assert all(len(json.loads(frame)["messages"]) <= 8 for _, frame in pages)
        assert [('"more":true' in frame) for _, frame in pages] == [True] * (len(pages) - 1) + [False]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_one_users_resumes_wait_for_their_byte_budget_and_another_user_does_not(tmp_path: Path) -> None:
    # 10 kB/s with 40 kB at once; 80 kB of history: the first half at once, the rest over about 4 s.
    hub = await make_hub(tmp_path / "h.sqlite3", history_page_bytes=8_000, user_resume_bytes=10_000)
    try:
        await fill(hub, "r", 80, 1000)
        started = time.monotonic()
        mallory = hub.member("r", user("mallory"))
        await hub.join(mallory, after="0-0")
        first = await history_pages(mallory)
        assert texts(first) == [f"{i:04d}" for i in range(80)]
        took = first[-1][0] - started
        assert 2.5 < took < 8, took
        # Her budget is spent; another user's resume is not held back by it.
        alice = hub.member("r", user("alice"))
        await hub.join(alice, after="0-0")
        begun = time.monotonic()
        quick = await history_pages(alice)
        assert quick[1][0] - begun < 0.5  # her second page at once (her own budget is full)
        assert texts(quick)[:3] == ["0000", "0001", "0002"]
    finally:
        await hub.stop()


@pytest.mark.anyio
async def test_a_socket_closed_while_its_resume_waits_for_budget_closes_at_once(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3", history_page_bytes=8_000, user_resume_bytes=20_000)
    try:
        await fill(hub, "r", 200, 1000)  # 200 kB: far past the 80 kB at once
        mallory = hub.member("r", user("mallory"))
        await hub.join(mallory, after="0-0")
        outbox = mallory.outbox
        pages = 0
        while True:  # read until the budget makes the next page wait
            try:
                frame = await asyncio.wait_for(outbox.get(), 0.2)  # a page's wait: 8 kB at 20 kB/s
            except TimeoutError:
                break
            assert frame is not None
            pages += '"type":"history"' in frame
        assert 8 <= pages <= 12  # 80 kB of 200 kB came at once, in pages of 8 kB
        waiting = asyncio.ensure_future(outbox.get())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # still waiting for budget
        closed = time.monotonic()
        outbox.close(1000, "bye")
        rest = [await asyncio.wait_for(waiting, 1)]
        while rest[-1] is not None:
            rest.append(await asyncio.wait_for(outbox.get(), 1))
        assert time.monotonic() - closed < 0.2
        assert not any('"type":"history"' in frame for frame in rest[:-1])  # no page read after the close
    finally:
        await hub.stop()
