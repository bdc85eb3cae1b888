"""A bug while serving one socket ends that socket with 1011 and an ERROR log line, never silently, and
the server and other sockets carry on."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server


@pytest.mark.anyio
async def test_an_unexpected_error_closes_1011_and_is_logged(idp: FakeIdP, make_settings: SettingsFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    app = create_app(make_settings(public_url=f"http://127.0.0.1:{port}"))
    hub = app.state.gateway.hub
    original = hub.post

    async def broken(member, text, client_id):  # type: ignore[no-untyped-def]
        if text == "boom":
            raise RuntimeError("a bug")
        await original(member, text, client_id)

    hub.post = broken
    unlucky, bystander = idp.issue_token("unlucky"), idp.issue_token("bystander")
    with live_server(app, port) as address, caplog.at_level(logging.ERROR):
        url = f"ws://{address}/ws/lobby"
        async with connect(url, additional_headers={"Authorization": f"Bearer {unlucky}"}) as victim, \
                connect(url, additional_headers={"Authorization": f"Bearer {bystander}"}) as other:
            await victim.send(json.dumps({"type": "message", "text": "boom"}))
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(victim.recv(), 5)
            assert victim.close_code == 1011
            await other.send(json.dumps({"type": "ping"}))
            while json.loads(await asyncio.wait_for(other.recv(), 5))["type"] != "pong":
                pass
    assert any("closing it with 1011" in r.getMessage() for r in caplog.records)
