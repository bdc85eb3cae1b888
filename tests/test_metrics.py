"""GET /metrics on a live server: values after a scripted sign-in and chat, labels that never name a user,
room or token, and who may read it (loopback peers after trusted-proxy handling, or the metrics token)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.app import create_app
from gateway.metrics import HANDSHAKE_RESULTS
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory
from tests.live import free_port, live_server

METRICS_TOKEN = "metrics-token-0123456789-abcdefghij"
ROOM = "room-q9x7"  # distinctive, so its absence from /metrics means something
STAFF_ROOM = "staff-k2v8"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]



@pytest.fixture
def address(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[str]:
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", metrics_token=METRICS_TOKEN,
                             max_sockets_per_user=2, rooms={STAFF_ROOM: {"allowed_groups": ["staff"]}})
    with live_server(create_app(settings), port) as served:
        yield served


@pytest.fixture
def proxied(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[str]:
    """A live server behind a trusted proxy on loopback: X-Forwarded-For names the client."""
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", metrics_token=METRICS_TOKEN,
                             trusted_proxies=["127.0.0.1"])
    with live_server(create_app(settings), port, trusted_proxies=settings.trusted_proxies) as served:
        yield served


async def scrape(address: str, **headers: str) -> tuple[str, Samples]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://{address}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text) for sample in family.samples
    }
    return answer.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def refused(address: str, room: str = ROOM, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"ws://{address}/ws/{room}", open_timeout=5, **kwargs):
            pass
    status: int = info.value.response.status_code
    return status


async def frames_until(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] == kind:
            return frame


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    return ws.close_code


@pytest.fixture
async def cookie(address: str, idp: FakeIdP) -> AsyncIterator[str]:
    async with httpx.AsyncClient(base_url=f"http://{address}", follow_redirects=False) as browser:
        start = await browser.get("/login/idp")
        done = await browser.get(idp.authorize(start.headers["location"], "carol-5d1e"))
        assert done.status_code == 303
        yield f"gateway_token={browser.cookies['gateway_token']}"


@pytest.mark.anyio
async def test_metrics_after_a_scripted_sign_in_and_chat(address: str, cookie: str, idp: FakeIdP) -> None:
    origin = f"http://{address}"
    browser: dict[str, Any] = {"additional_headers": {"Cookie": cookie}, "origin": origin}
    bearer = idp.issue_token("bob-8c2f")
    userinfo = idp.mock.routes["userinfo"]
    answer_normally = cast(Callable[[httpx.Request], httpx.Response], userinfo.side_effect)
    down_token = idp.issue_token("dora-3b9a")  # the provider fails for this one: provider_unavailable

    def userinfo_failing_for_dora(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == f"Bearer {down_token}":
            return httpx.Response(503)
        return answer_normally(request)

    userinfo.side_effect = userinfo_failing_for_dora

    _, before = await scrape(address)
    assert value(before, "gateway_validation_cache_total", result="miss") == 1  # the sign-in's own check

    async with connect(f"ws://{address}/ws/{ROOM}", **browser) as tab1, \
            connect(f"ws://{address}/ws/{ROOM}", **browser) as tab2:
        await frames_until(tab1, "presence")
        await frames_until(tab2, "presence")
        _, during = await scrape(address)
        assert value(during, "gateway_open_sockets") == 2
        assert value(during, "gateway_validation_cache_total", result="hit") == 2  # the cookie, checked once

        # Refused handshakes, one of each kind.
        assert await refused(address, **browser) == 429  # a third socket for carol
        assert await refused(address) == 401
        assert await refused(address, additional_headers={"Authorization": "Basic Ym9iOnB3"}) == 400
        assert await refused(address, additional_headers={"Authorization": "Bearer not-a-known-token"}) == 401
        assert await refused(address, additional_headers={"Cookie": cookie}, origin="http://evil.test") == 403
        assert await refused(address, STAFF_ROOM, additional_headers={"Authorization": f"Bearer {bearer}"}) == 403
        assert await refused(address, additional_headers={"Authorization": f"Bearer {down_token}"}) == 503

        await tab1.send(json.dumps({"type": "message", "text": "hello from carol", "client_id": "m1"}))
        await frames_until(tab1, "ack")
        await frames_until(tab2, "message")
        await tab2.send(json.dumps({"type": "message", "text": "and again"}))
        await frames_until(tab1, "message")
        text, after_chat = await scrape(address)

    # Two protocol violations, each closed by the server with its code.
    for payload, code in ((b"\x00\x01", 1003), ("not json", 1007)):
        async with connect(f"ws://{address}/ws/{ROOM}",
                           additional_headers={"Authorization": f"Bearer {idp.issue_token('eve-0a4c')}"}) as ws:
            await frames_until(ws, "presence")
            await ws.send(payload)
            assert await closed_with(ws) == code
    await asyncio.sleep(0.1)  # the server's side of the close
    text, after = await scrape(address)

    handshakes = {result: value(after, "gateway_handshakes_total", result=result) for result in HANDSHAKE_RESULTS}
    assert handshakes == {"ok": 4, "unauthenticated": 1, "invalid_request": 1, "invalid_token": 1, "forbidden": 1,
                          "bad_origin": 1, "provider_unavailable": 1, "rate_limited": 1}
    assert value(after, "gateway_socket_closes_total", code="1003") == 1
    assert value(after, "gateway_socket_closes_total", code="1007") == 1
    assert value(after, "gateway_open_sockets") == 0
    assert value(after_chat, "gateway_messages_in_total") == 2
    # Each message reached both tabs: two deliveries per message, on top of presence traffic.
    assert value(after_chat, "gateway_messages_out_total") - value(during, "gateway_messages_out_total") >= 4

    # Every call the provider received (discovery and userinfo; the token exchange is authlib's) is counted
    # and timed, labelled by provider and strategy only.
    received = idp.mock.routes["discovery"].call_count + userinfo.call_count
    assert value(after, "gateway_provider_calls_total", provider="idp", strategy="userinfo") == received
    assert value(after, "gateway_provider_call_seconds_count", provider="idp", strategy="userinfo") == received
    assert value(after, "gateway_provider_call_seconds_bucket", provider="idp", strategy="userinfo",
                 le="+Inf") == received
    assert value(after, "gateway_provider_call_seconds_sum", provider="idp", strategy="userinfo") > 0
    # Sequential requests: each miss is one provider call, every other lookup a hit.
    misses = value(after, "gateway_validation_cache_total", result="miss")
    assert misses == userinfo.call_count
    # Hits: the cookie for each of carol's three handshakes, and her access re-checked before each message.
    assert value(after, "gateway_validation_cache_total", result="hit") == 5

    token_value = cookie.split("=", 1)[1]
    for secret in ("carol", "Carol", "bob-8c2f", "dora", "eve-0a4c", "example.com", ROOM, STAFF_ROOM, token_value,
                   bearer, down_token, "not-a-known-token", "hello from carol"):
        assert secret not in text, secret
    label_names = {name for (_, labels) in after for name, _ in labels}
    assert label_names <= {"result", "code", "provider", "strategy", "le"}


@pytest.mark.anyio
async def test_loopback_peers_may_read_metrics(address: str) -> None:
    text, _ = await scrape(address)
    assert "gateway_open_sockets" in text


@pytest.mark.anyio
async def test_a_public_client_behind_a_trusted_proxy_gets_404(proxied: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{proxied}") as http:
        answer = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
        assert answer.status_code == 404
        assert "gateway_" not in answer.text
        wrong = await http.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7",
                                                    "Authorization": "Bearer not-the-metrics-token"})
        assert wrong.status_code == 404
    text, _ = await scrape(proxied, **{"X-Forwarded-For": "203.0.113.7", "Authorization": f"Bearer {METRICS_TOKEN}"})
    assert "gateway_handshakes_total" in text


def test_no_token_configured_means_loopback_only(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    # TestClient's peer is "testclient": not loopback.
    with TestClient(create_app(make_settings()), base_url=PUBLIC_URL) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
        assert client.get("/metrics", headers={"Authorization": "Bearer None"}).status_code == 404


def test_the_metrics_token_opens_metrics_from_anywhere(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(metrics_token=METRICS_TOKEN)), base_url=PUBLIC_URL) as client:
        assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": f"bearer {METRICS_TOKEN}x"}).status_code == 404
        assert client.get("/metrics", headers={"Authorization": METRICS_TOKEN}).status_code == 404
