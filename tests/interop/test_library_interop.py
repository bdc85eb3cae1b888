"""examples/secured_ws.py, written only against the public API, at the certified provider: a browser signs
in, a route and a socket are protected by the one dependency, and a revoked token closes the socket 4401."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.examples_support import example_env, in_process
from tests.interop.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROVIDER_NAME,
    ProviderClient,
    refused,
    sign_in_through_gateway,
)


@pytest.fixture
def example(issuer: str, gateway_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    env = example_env(gateway_port, issuer, PROVIDER_NAME, tmp_path, CLIENT_ID, CLIENT_SECRET)
    with in_process("secured_ws.py", env, tmp_path, monkeypatch) as base:
        yield base


@pytest.mark.anyio
async def test_the_example_signs_in_protects_and_closes_at_revocation(example: str, issuer: str) -> None:
    cookie = sign_in_through_gateway(example, "ada", next_path="/me")
    async with httpx.AsyncClient(base_url=example, timeout=10) as client:
        assert (await client.get("/me")).status_code == 401
        me = await client.get("/me", headers={"Cookie": f"gateway_token={cookie}"})
        assert me.json()["id"] == f"{PROVIDER_NAME}:ada"
    socket = example.replace("http://", "ws://", 1) + "/secured-ws"
    assert (await refused(socket)).status_code == 401
    provider = ProviderClient(issuer)
    access = provider.user_tokens("ada")["access_token"]
    async with connect(socket, additional_headers={"Authorization": f"Bearer {access}"}) as ws:
        await ws.send("hi")
        assert str(await asyncio.wait_for(ws.recv(), 5)).lower() == "ada: hi"
        provider.revoke(access)
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 4401
