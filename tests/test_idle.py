"""GATEWAY_IDLE_TIMEOUT: a socket whose client sends nothing is closed with 1000 "idle"; one that talks
stays open. Off by default."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server


@pytest.mark.anyio
async def test_a_quiet_socket_is_closed_idle_and_a_talking_one_is_not(idp: FakeIdP,
                                                                       make_settings: SettingsFactory) -> None:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", idle_timeout=0.6)
    quiet_token, chatty_token = idp.issue_token("quiet"), idp.issue_token("chatty")
    with live_server(create_app(settings), port) as address:
        url = f"ws://{address}/ws/lobby"
        async with connect(url, additional_headers={"Authorization": f"Bearer {quiet_token}"}) as quiet, \
                connect(url, additional_headers={"Authorization": f"Bearer {chatty_token}"}) as chatty:
            started = time.monotonic()
            for _ in range(8):  # 1.6 s of pings, 0.2 s apart
                await chatty.send(json.dumps({"type": "ping"}))
                await asyncio.sleep(0.2)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(quiet.recv(), 3)
            assert quiet.close_code == 1000 and quiet.close_reason.startswith("idle")
            assert time.monotonic() - started < 3
            await chatty.send(json.dumps({"type": "ping"}))
            while json.loads(await asyncio.wait_for(chatty.recv(), 3))["type"] != "pong":
                pass


def test_idle_timeout_is_off_by_default(make_settings: SettingsFactory) -> None:
    assert make_settings().idle_timeout == 0
