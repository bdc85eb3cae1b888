"""Shared by the attack tests: a real uvicorn gateway (handshake statuses are only true there), a browser's
sign-in on it, and a handshake helper that returns the server's answer whatever it is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server

ALLOWED_ORIGIN = "http://app.allowed.test"  # GATEWAY_ALLOWED_ORIGINS in every live gateway here



@dataclass(frozen=True)
class Live:
    address: str  # 127.0.0.1:<port>
    settings: Settings

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def ws(self, room: str = "lobby") -> str:
        return f"ws://{self.address}/ws/{room}"


StartGateway = Callable[..., AbstractContextManager[Live]]


@pytest.fixture
def start_gateway(idp: FakeIdP, make_settings: SettingsFactory) -> StartGateway:
    """Start a real uvicorn gateway with some settings changed (a context manager)."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[Live]:
        port = free_port()
        values: dict[str, Any] = {"public_url": f"http://127.0.0.1:{port}", "allowed_origins": [ALLOWED_ORIGIN]}
        settings = make_settings(**{**values, **overrides})
        with live_server(create_app(settings), port) as address:
            yield Live(address, settings)

    return start


@pytest.fixture
def live(start_gateway: StartGateway) -> Iterator[Live]:
    with start_gateway() as gateway:
        yield gateway


async def browser_sign_in(live: Live, idp: FakeIdP, sub: str) -> str:
    """The whole sign-in flow on the live server, as a browser runs it; returns its Cookie header value."""
    async with httpx.AsyncClient(base_url=f"http://{live.address}", follow_redirects=False) as browser:
        start = await browser.get("/login/idp")
        done = await browser.get(idp.authorize(start.headers["location"], sub))
        assert done.status_code == 303, done.text
        return f"gateway_token={browser.cookies['gateway_token']}"


async def handshake(url: str, **kwargs: Any) -> httpx.Response:
    """The server's answer to a WebSocket handshake: 101 when it accepted (the socket is closed again at
    once), else the refusal with its headers and body."""
    try:
        async with connect(url, open_timeout=5, **kwargs) as ws:
            response = ws.response
            assert response is not None
    except InvalidStatus as refused:
        response = refused.response
    return httpx.Response(response.status_code, headers=list(response.headers.raw_items()),
                          content=bytes(response.body or b""))


def provider_calls(idp: FakeIdP, route: str = "userinfo") -> int:
    return int(idp.mock.routes[route].call_count)
