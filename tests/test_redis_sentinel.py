"""Two gateway processes over a Sentinel-managed Redis (a primary, two replicas, three Sentinels) with
GATEWAY_REDIS_MIN_REPLICAS=1: 50 clients chat while the primary is SIGKILLed. After the failover every acked
message is in history exactly once on both instances, presence holds everyone still connected, and
/readyz went 503 while no primary answered and 200 again after."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.redis_topologies import sentinel_set, until
from tests.test_scale_out import Cluster as Gateways
from tests.test_scale_out import frame_of, resumed, ws

CLIENTS, PER_CLIENT, USERS = 50, 12, 10


async def watch_readiness(url: str, seen: list[tuple[float, int]], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=3) as http:
        while not stop.is_set():
            try:
                seen.append((time.monotonic(), (await http.get(f"{url}/readyz")).status_code))
            except httpx.HTTPError:
                seen.append((time.monotonic(), 0))
            await asyncio.sleep(0.1)


def unready_seconds(seen: list[tuple[float, int]]) -> float:
    bad = [t for t, status in seen if status != 200]
    return (max(bad) - min(bad)) if bad else 0.0


@pytest.mark.anyio
async def test_sentinel_failover_loses_and_duplicates_nothing_acked(tmp_path: Path, redis_prefix: str) -> None:
    with sentinel_set(replicas=2, down_after_ms=1000) as redis_set:
        gateways = Gateways(tmp_path, redis_set.url, redis_prefix)
        gateways.env |= {"GATEWAY_REDIS_MIN_REPLICAS": "1", "GATEWAY_REDIS_REPLICA_TIMEOUT": "0.5",
                         "GATEWAY_PRESENCE_TTL": "6"}
        try:
            gateways.start_provider()
            a, b = gateways.start_gateway("a"), gateways.start_gateway("b")
            await run_and_fail_over(gateways, redis_set, a, b)
        except BaseException:
            for name in ("a", "b"):
                log = tmp_path / f"{name}.log"
                if log.exists():
                    print(f"---- {name} ----\n{log.read_text('utf-8', 'replace')[-3000:]}")
            raise
        finally:
            gateways.stop()


async def run_and_fail_over(gateways: Gateways, redis_set: Any, a: str, b: str) -> None:
    tokens = await asyncio.gather(*(asyncio.to_thread(gateways.token, f"user{i % USERS}") for i in range(CLIENTS)))
    acked: dict[str, str] = {}
    refused: list[float] = []
    everyone_acked, audited, third_acked = asyncio.Event(), asyncio.Event(), asyncio.Event()
    killed: list[float] = []
    readiness: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}
    stop_watching = asyncio.Event()
    watchers = [asyncio.create_task(watch_readiness(url, readiness[name], stop_watching))
                for name, url in (("a", a), ("b", b))]

    async def chat(index: int) -> None:
        home = a if index % 2 == 0 else b
        unacked = {f"{index}-{n}": f"client {index} message {n}" for n in range(PER_CLIENT)}
        pending = list(unacked)
        while True:
            try:
                headers = {"Authorization": f"Bearer {tokens[index]}"}
                async with connect(ws(home, "ha"), additional_headers=headers, open_timeout=5) as conn:
                    await frame_of(conn, "welcome")
                    resend_at = 0.0
                    while not audited.is_set():
                        now = asyncio.get_running_loop().time()
                        if unacked and now >= resend_at:  # the page: send, and resend what is not acked
                            for client_id in (pending or list(unacked))[:3]:
                                await conn.send(json.dumps({"type": "message", "text": unacked[client_id],
                                                            "client_id": client_id}))
                            del pending[:3]
                            resend_at = now + (0.05 if pending else 0.5)
                        try:
                            frame = json.loads(await asyncio.wait_for(conn.recv(), 0.05))
                        except TimeoutError:
                            continue
                        if frame["type"] == "ack":
                            acked[frame["client_id"]] = frame["id"]
                            unacked.pop(frame["client_id"], None)
                            if len(acked) >= CLIENTS * PER_CLIENT // 3:
                                third_acked.set()
                            if len(acked) == CLIENTS * PER_CLIENT:
                                everyone_acked.set()
                        elif frame["type"] == "error":
                            assert frame["code"] == "store_unavailable", frame
                            refused.append(time.monotonic())
                    return
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                await asyncio.sleep(0.2)  # reconnect and resend

    async def kill_mid_run() -> None:
        await third_acked.wait()
        redis_set.servers.kill(redis_set.primary_now())  # a third acked, the rest in flight or unsent
        killed.append(time.monotonic())
        acked_at_kill.append(len(acked))

    acked_at_kill: list[int] = []
    started = time.monotonic()
    clients = [asyncio.create_task(chat(i)) for i in range(CLIENTS)]
    killer = asyncio.create_task(kill_mid_run())
    await asyncio.wait_for(everyone_acked.wait(), 90)
    await killer
    old = redis_set.primary
    await asyncio.to_thread(until, lambda: redis_set.primary_now() != old, "Sentinel to name a new primary")

    # Presence recovers: a newcomer on each instance sees all ten users still connected, and itself.
    for url in (a, b):
        newcomer = await asyncio.to_thread(gateways.token, "newcomer")
        async with connect(ws(url, "ha"), additional_headers={"Authorization": f"Bearer {newcomer}"}) as conn:
            present = await frame_of(conn, "presence", timeout=10)
            assert sorted(u["name"] for u in present["users"]) == sorted({f"user{i}" for i in range(USERS)} |
                                                                         {"newcomer"})
            # Every acked message is in history exactly once, with its acked id, read through this instance.
            await conn.send(json.dumps({"type": "resume", "after": "0-0"}))
            stored = await resumed(conn)
        client_ids = [m["client_id"] for m in stored]
        assert len(client_ids) == len(set(client_ids)), f"{url}: a message stored twice"
        assert {m["client_id"]: m["id"] for m in stored} == acked, f"{url}: an acked message was lost"
    audited.set()
    await asyncio.gather(*clients)
    await asyncio.sleep(0.5)
    stop_watching.set()
    await asyncio.gather(*watchers)
    for name, seen in readiness.items():
        assert any(status == 503 for _t, status in seen), f"{name}: /readyz never said 503"
        assert seen[-1][1] == 200, f"{name}: /readyz did not come back"
    # (Client-side times say little here: each client reads 600 broadcasts, so its acks arrive late. The
    # /readyz probes, on their own connections, time the outage.)
    print(f"\nsentinel failover: {len(acked)} acked ({acked_at_kill[0]} when the primary was killed), 0 lost, "
          f"0 twice; {len(refused)} store_unavailable answers (resent); /readyz 503 for "
          f"{unready_seconds(readiness['a']):.1f} s (a), {unready_seconds(readiness['b']):.1f} s (b); "
          f"run {time.monotonic() - started:.1f} s")


@pytest.mark.anyio
async def test_the_shared_cache_and_deny_list_follow_a_failover(redis_prefix: str) -> None:
    from gateway.cache import DenyList, Entry
    from gateway.chat.redis_broker import RedisBroker
    from gateway.shared import RedisShared
    from gateway.tokens import Principal

    with sentinel_set(replicas=1, down_after_ms=1000) as redis_set:
        broker = RedisBroker(redis_set.url, redis_prefix)
        await broker.start(lambda event: None)
        try:
            shared = RedisShared(broker.redis, redis_prefix, broker.announce)
            until_then = time.time() + 60
            await shared.deny("before", until_then)
            await asyncio.sleep(0.3)  # replicated (asynchronously) before the primary dies
            redis_set.servers.kill(redis_set.primary)
            assert await broker.healthy() is False
            await asyncio.to_thread(until, lambda: redis_set.primary_now() != redis_set.primary, "a new primary")
            for _ in range(100):
                if await broker.healthy():
                    break
                await asyncio.sleep(0.1)
            await shared.deny("after", until_then)  # the same client, now talking to the promoted replica
            principal = Principal(subject="s", name="n", provider="demo")
            await shared.keep("token", Entry(principal, None, until_then))
            fetched = await shared.fetch("token")
            assert fetched is not None and fetched.principal is not None and fetched.principal.subject == "s"
            loaded = DenyList()
            await shared.load_denied(loaded)
            assert len(loaded) == 2
        finally:
            await broker.stop()
