"""Attacks with frames on an open chat socket (docs/protocol.md), against a real uvicorn: oversized,
binary, non-JSON and pathological JSON frames end the socket with their close code (never a dropped
connection, never an error log), and a flood is refused then closed with 4429.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import FakeIdP
from tests.security.conftest import Live, StartGateway
from tests.test_chat_socket import joined, next_frame

pytestmark = pytest.mark.anyio


async def _closed_with(live: Live, idp: FakeIdP, payload: str | bytes, caplog: pytest.LogCaptureFixture) -> int:
    """Send `payload` on a fresh socket; the close code the server ends it with."""
    caplog.set_level(logging.INFO)
    token = idp.issue_token("mallory")
    async with connect(live.ws(), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await joined(ws)
        await ws.send(payload)
        with pytest.raises(ConnectionClosed):
            while True:
                await next_frame(ws)
        assert ws.protocol.close_rcvd is not None, "dropped without a close frame (1006)"
        code = ws.protocol.close_rcvd.code
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://{live.address}/healthz")).status_code == 200
    await asyncio.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    return code


async def test_oversized_frame_closes_1009(live: Live, idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> None:
    frame = json.dumps({"type": "message", "text": "x" * 5000})  # over the 4 KiB a client frame may have
    assert await _closed_with(live, idp, frame, caplog) == 1009


async def test_binary_frame_closes_1003(live: Live, idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> None:
    assert await _closed_with(live, idp, b'{"type":"ping"}', caplog) == 1003


@pytest.mark.parametrize("frame", ["not json", "{", "", '{"type": "message", "text": NaN'])
async def test_non_json_frame_closes_1007(live: Live, idp: FakeIdP, caplog: pytest.LogCaptureFixture,
                                          frame: str) -> None:
    assert await _closed_with(live, idp, frame, caplog) == 1007


async def test_deeply_nested_json_frame_closes_1007(live: Live, idp: FakeIdP,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # Found by fuzzing: the JSON parser's RecursionError killed the reader and dropped the socket.
    assert await _closed_with(live, idp, "[" * 3000, caplog) == 1007


async def _error_then_alive(ws: ClientConnection, frame: str) -> dict[str, Any]:
    await ws.send(frame)
    error = await next_frame(ws)
    await ws.send(json.dumps({"type": "ping"}))
    assert await next_frame(ws) == {"type": "pong"}  # still connected
    return error


async def test_unstorable_frames_get_bad_frame_and_keep_the_socket(live: Live, idp: FakeIdP,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Found by fuzzing: valid JSON that no store takes (lone surrogate escapes, ids past SQLite's
    # integers) raised deep in the hub and dropped the socket without a close frame.
    caplog.set_level(logging.INFO)
    token = idp.issue_token("mallory")
    async with connect(live.ws(), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await joined(ws)
        for frame in ('{"type":"message","text":"\\ud800"}', '{"type":"message","text":"a","client_id":"\\udfff"}',
                      '{"type":"resume","after":"99999999999999999999-1"}', '{"type":"resume","after":"\\ud800-1"}'):
            error = await _error_then_alive(ws, frame)
            assert (error["type"], error["code"]) == ("error", "bad_frame"), frame
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


async def test_message_flood_is_rate_limited_then_closed_4429(start_gateway: StartGateway, idp: FakeIdP) -> None:
    burst = 10
    with start_gateway(message_rate=1.0, message_burst=burst) as live:
        flooder, watcher = idp.issue_token("flooder"), idp.issue_token("watcher")
        async with connect(live.ws(), additional_headers={"Authorization": f"Bearer {flooder}"}) as attacker, \
                connect(live.ws(), additional_headers={"Authorization": f"Bearer {watcher}"}) as observer:
            await joined(attacker)
            await joined(observer)
            for i in range(60):
                try:
                    await attacker.send(json.dumps({"type": "message", "text": f"spam {i}"}))
                except ConnectionClosed:
                    break
            seen: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed):
                while True:
                    seen.append(await next_frame(attacker))
            assert attacker.protocol.close_rcvd is not None and attacker.protocol.close_rcvd.code == 4429
            assert any(f["type"] == "error" and f["code"] == "rate_limited" for f in seen)
            delivered = []
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(observer.recv(), 0.5))
                    if frame["type"] == "message":
                        delivered.append(frame)
            except TimeoutError:
                pass
            assert burst <= len(delivered) <= burst + 3  # the burst (and a refill or two), nothing more
