"""Handshakes cost the provider little: concurrent ones share a call; failures from one address are
limited (429 + Retry-After) before any provider call; oversized tokens never reach the provider."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server


@pytest.fixture
def address(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[str]:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", failed_auth_burst=5, failed_auth_rate=0.2,
                             max_sockets_per_user=1000)
    with live_server(create_app(settings), port) as served:
        yield served


async def status_of(url: str, token: str) -> int:
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
            await ws.recv()
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.mark.anyio
async def test_concurrent_handshakes_with_one_token_cost_one_provider_call(address: str, idp: FakeIdP) -> None:
    token = idp.issue_token("zoe")
    results = await asyncio.gather(*(status_of(f"ws://{address}/ws/lobby", token) for _ in range(200)))
    assert results == [101] * 200
    assert idp.mock.routes["userinfo"].call_count == 1


@pytest.mark.anyio
async def test_failed_handshakes_from_one_address_are_rate_limited(address: str, idp: FakeIdP) -> None:
    for i in range(5):
        assert await status_of(f"ws://{address}/ws/lobby", f"wrong-{i}") == 401
    calls = idp.mock.routes["userinfo"].call_count
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{address}/ws/lobby", additional_headers={"Authorization": "Bearer wrong-x"}):
            pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert idp.mock.routes["userinfo"].call_count == calls  # refused before any provider call
    # Even a valid token waits: the address is cooling down.
    assert await status_of(f"ws://{address}/ws/lobby", idp.issue_token("amy")) == 429


def test_oversized_token_is_400_without_a_provider_call(address: str, idp: FakeIdP) -> None:
    response = httpx.get(f"http://{address}/auth/session", headers={"Authorization": "Bearer " + "a" * 9000})
    assert response.json()["reason"] == "invalid_request"
    assert idp.mock.routes["userinfo"].call_count == 0


@pytest.mark.anyio
async def test_sockets_per_user_are_capped(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", max_sockets_per_user=3)
    token = idp.issue_token("many")
    headers = {"Authorization": f"Bearer {token}"}
    with live_server(create_app(settings), port) as served:
        url = f"ws://{served}/ws/lobby"
        async with connect(url, additional_headers=headers), connect(url, additional_headers=headers), \
                connect(url, additional_headers=headers):
            assert await status_of(url, token) == 429
        assert await status_of(url, token) == 101  # closed sockets free their places
