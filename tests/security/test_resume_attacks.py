"""Resume amplification: a socket asking for a room's whole history again and again, reading or not, must
cost bounded memory and CPU. History after a resume point comes a page at a time, each read only when the
socket has sent the one before; queues are bounded in bytes; resumes are rate-limited per socket and user."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gateway.chat.broker import MemoryBroker
from gateway.chat.history import SqliteHistory
from gateway.chat.hub import Hub, HubLimits
from gateway.chat.outbox import TOO_SLOW, Outbox
from tests.conftest import FakeIdP
from tests.security.conftest import StartGateway

TEXT = "x" * 2000


async def frame_of(ws: ClientConnection, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def fill(ws: ClientConnection, count: int) -> list[str]:
    """Post `count` messages and wait for their acks: their ids, oldest first."""
    ids = []
    for i in range(count):
        await ws.send(json.dumps({"type": "message", "text": f"{i} {TEXT[:1900]}", "client_id": f"f{i}"}))
        ids.append((await frame_of(ws, "ack"))["id"])
    return ids


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.anyio
async def test_a_resume_is_sent_in_pages_of_bounded_size(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(history_page=40, message_rate=1000, message_burst=1000) as live:
        async with connect(live.ws("big"), additional_headers=bearer(idp.issue_token("writer"))) as ws:
            ids = await fill(ws, 100)
            await ws.send(json.dumps({"type": "resume", "after": "0-0"}))
            pages = [await frame_of(ws, "history")]
            while pages[-1].get("more"):
                pages.append(await frame_of(ws, "history"))
        # At most GATEWAY_HISTORY_PAGE messages, and at most 64 KiB of them: 31 messages of 2,000 characters.
        assert [len(page["messages"]) for page in pages] == [31, 31, 31, 7]
        assert [m["id"] for page in pages for m in page["messages"]] == ids
        assert max(len(json.dumps(page)) for page in pages) < 64 * 1024 + 2100


@pytest.mark.anyio
async def test_resumes_from_a_socket_that_does_not_read_cost_no_memory(start_gateway: StartGateway,
                                                                       idp: FakeIdP) -> None:
    """The review's attack: 40 full-room resumes without reading. Each replaces the one under way, and past
    the socket's burst they are refused: the server holds one page, never 40 copies of the room."""
    with start_gateway(message_rate=1000, message_burst=1000) as live:
        token = idp.issue_token("mallory")
        async with connect(live.ws("big"), additional_headers=bearer(token)) as ws:
            ids = await fill(ws, 60)
        async with connect(live.ws("big"), additional_headers=bearer(token), max_size=None,
                           max_queue=None) as ws:
            await frame_of(ws, "presence")
            for _ in range(40):
                await ws.send(json.dumps({"type": "resume", "after": "0-0"}))
            frames = []
            with pytest.raises(TimeoutError):
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 2)))
        histories = [f for f in frames if f["type"] == "history"]
        refused = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
        assert len(refused) == 37  # a burst of 3 per socket
        assert all(f["retry_after"] > 0 for f in refused)
        # 60 messages of 2,000 characters are two pages of 64 KiB. A resume restarting the one under way drops
        # its remaining pages (how many were sent before the next came is timing): at most the two pages of
        # each of the 3 let through, never 37 more copies; the last ends with the room's newest message.
        assert 2 <= len(histories) <= 3 * 2
        assert "more" not in histories[-1] and histories[-1]["messages"][-1]["id"] == ids[-1]


@pytest.mark.anyio
async def test_resumes_are_limited_per_user_across_sockets(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(resume_burst=4, resume_rate=0.01, max_sockets_per_user=10) as live:
        token = idp.issue_token("mallory")
        sockets = [await connect(live.ws("r"), additional_headers=bearer(token)) for _ in range(3)]
        try:
            answers = []
            for ws in sockets:
                await frame_of(ws, "presence")
                for _ in range(2):
                    await ws.send(json.dumps({"type": "resume", "after": "0-0"}))
                    answers.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            kinds = [a["type"] if a["type"] != "error" else a["code"] for a in answers]
            assert kinds == ["history"] * 4 + ["rate_limited"] * 2
            # ...and a connect with ?after= is refused before the handshake completes, with Retry-After.
            with pytest.raises(InvalidStatus) as info:
                async with connect(live.ws("r") + "?after=0-0", additional_headers=bearer(token)):
                    pass
            assert info.value.response.status_code == 429
            assert int(info.value.response.headers["Retry-After"]) > 0
            # Another user is not held back by mallory's storm.
            async with connect(live.ws("r") + "?after=0-0", additional_headers=bearer(idp.issue_token("bob"))) as ok:
                assert (await frame_of(ok, "history"))["messages"] == []
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


@pytest.mark.anyio
async def test_a_socket_over_its_byte_bound_closes_4408(tmp_path: Path) -> None:
    """A reader that stalls while 80 KB come its way is closed on bytes (64 KiB here) long before its 256
    frames are queued; the reader next to it is untouched."""
    hub = Hub(MemoryBroker(SqliteHistory(tmp_path / "h.sqlite3")),
              HubLimits(outbox_bytes=65536, message_rate=1000, message_burst=1000))
    await hub.start()
    try:
        slow, fast, writer = (hub.member("r", {"id": f"idp:{n}", "name": n}) for n in ("slow", "fast", "w"))
        for member in (slow, fast, writer):
            await hub.join(member)
        for _ in range(40):
            await hub.post(writer, TEXT, None)
            fast.outbox.discard_queued()  # this one keeps up
        assert slow.outbox.close_code == TOO_SLOW
        assert len(slow.outbox) == 0 and slow.outbox.queued_bytes == 0  # what it held is let go at once
        assert fast.outbox.close_code is None
    finally:
        await hub.stop()


def test_the_outbox_counts_bytes_and_closes_when_they_overflow() -> None:
    outbox = Outbox(limit=1000, limit_bytes=10_000)
    for _ in range(4):
        outbox.put("é" * 1000)  # 2,000 bytes each in UTF-8
    assert outbox.queued_bytes == 8000 and outbox.close_code is None
    outbox.put("é" * 1500)
    assert outbox.close_code == TOO_SLOW and outbox.queued_bytes == 0
