"""Several gateway instances over one Redis, as real processes: the OpenID provider runs in its own
process so that killing a gateway does not kill it. Clients on A and B share rooms, history, presence and
logout; when A is SIGKILLed its clients move to B, resume and resend, and no acked message is lost or
duplicated."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.live import free_port
from tests.processes import stop_all, wait_until_answers

SECRET = "scale-out-secret-key-0123456789-abcdefghij"



class Cluster:
    def __init__(self, workdir: Path, redis_url: str, prefix: str) -> None:
        self.workdir = workdir
        self.provider = f"http://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {
            "GATEWAY_SECRET_KEYS": SECRET,
            "GATEWAY_PROVIDERS__DEMO__ISSUER": self.provider,
            "GATEWAY_PROVIDERS__DEMO__CLIENT_ID": "gateway",
            "GATEWAY_PROVIDERS__DEMO__CLIENT_SECRET": "x",
            "GATEWAY_BROKER_URL": redis_url,
            "GATEWAY_REDIS_PREFIX": prefix,
            "GATEWAY_MESSAGE_RATE": "1000",
            "GATEWAY_MESSAGE_BURST": "1000",
            "GATEWAY_MAX_SOCKETS_PER_USER": "100",
            "GATEWAY_RESUME_BURST": "1000",  # five clients per user reconnect again and again here
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    def start_provider(self) -> None:
        log = self.workdir / "provider.log"
        with log.open("ab") as sink:
            process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "-p",
                                        self.provider.rsplit(":", 1)[1]], cwd=self.workdir, env=self.env,
                                       stdout=sink, stderr=subprocess.STDOUT)
        self.processes["provider"] = process
        wait_until_answers(f"{self.provider}/.well-known/openid-configuration", process, log)

    def start_gateway(self, name: str) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = self.workdir / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)], cwd=self.workdir,
                env=self.env | {"GATEWAY_PUBLIC_URL": url}, stdout=sink, stderr=subprocess.STDOUT)
        self.processes[name] = process
        self.urls[name] = url
        wait_until_answers(f"{url}/healthz", process, log)
        return url

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        stop_all(self.processes.values())

    def token(self, user: str) -> str:
        """An access token for `user` from the provider: code flow with PKCE, as a bot owner would."""
        meta = httpx.get(f"{self.provider}/.well-known/openid-configuration", timeout=10).json()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        redirect = "http://127.0.0.1/cb"
        answer = httpx.post(meta["authorization_endpoint"], params={
            "response_type": "code", "client_id": "gateway", "redirect_uri": redirect, "scope": "openid profile",
            "state": "s", "code_challenge": challenge, "code_challenge_method": "S256"}, data={"sub": user},
            timeout=10)
        code = httpx.URL(answer.headers["location"]).params["code"]
        token = httpx.post(meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": "gateway",
            "client_secret": "x", "code_verifier": verifier}, timeout=10).json()
        access: str = token["access_token"]
        return access


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, redis_url, redis_prefix)
    try:
        cluster.start_provider()
        cluster.start_gateway("a")
        cluster.start_gateway("b")
        yield cluster
    except BaseException:
        for name in ("a", "b", "provider"):
            log = tmp_path / f"{name}.log"
            if log.exists():
                sys.stderr.write(f"---- {name} ----\n{log.read_text('utf-8', 'replace')[-3000:]}\n")
        raise
    finally:
        cluster.stop()


def ws(url: str, room: str) -> str:
    return url.replace("http://", "ws://") + f"/ws/{room}"


async def frame_of(conn: ClientConnection, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await conn.recv())
            if frame["type"] == kind:
                return frame  # type: ignore[no-any-return]


async def resumed(conn: ClientConnection, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every message of a resume's `history` frames (a page each, `more` on all but the last)."""
    messages: list[dict[str, Any]] = []
    while True:
        page = await frame_of(conn, "history", timeout)
        messages += page["messages"]
        if not page.get("more"):
            return messages


@pytest.mark.anyio
async def test_two_instances_share_rooms_history_presence_and_logout(cluster: Cluster) -> None:
    ann, ben, late = await asyncio.gather(*(asyncio.to_thread(cluster.token, u) for u in ("ann", "ben", "late")))
    a, b = cluster.urls["a"], cluster.urls["b"]
    async with connect(ws(a, "team"), additional_headers={"Authorization": f"Bearer {ann}"}) as on_a, \
            connect(ws(b, "team"), additional_headers={"Authorization": f"Bearer {ben}"}) as on_b:
        await frame_of(on_a, "welcome")
        presence = await frame_of(on_b, "presence")
        assert sorted(u["name"] for u in presence["users"]) == ["ann", "ben"]
        for i in range(5):
            await on_a.send(json.dumps({"type": "message", "text": f"hello {i}", "client_id": f"c{i}"}))
        texts = [(await frame_of(on_b, "message"))["text"] for _ in range(5)]
        assert texts == [f"hello {i}" for i in range(5)]  # in order, across instances
        async with connect(ws(b, "team"), additional_headers={"Authorization": f"Bearer {late}"}) as joiner:
            history = await frame_of(joiner, "history")
            assert [m["text"] for m in history["messages"]] == texts  # written via A, read on B


@pytest.mark.anyio
async def test_failover_loses_and_duplicates_nothing_that_was_acked(cluster: Cluster) -> None:
    clients, per_client = 50, 12
    tokens = await asyncio.gather(*(asyncio.to_thread(cluster.token, f"user{i % 10}") for i in range(clients)))
    a, b = cluster.urls["a"], cluster.urls["b"]
    acked: dict[str, str] = {}  # client_id -> message id (the server's word)
    held: list[dict[str, dict[str, Any]]] = [{} for _ in range(clients)]  # per client: id -> message (merged)
    killed = asyncio.Event()

    async def run(index: int) -> None:
        home = a if index % 2 == 0 else b
        headers = {"Authorization": f"Bearer {tokens[index]}"}
        unacked: dict[str, str] = {}
        sent = 0
        last_id: str | None = None
        while sent < per_client or unacked:
            try:
                # This client wants the room's whole history: the join's history starts after last_id.
                after = f"?after={last_id or '0-0'}"
                async with connect(ws(home, "failover") + after, additional_headers=headers, open_timeout=5) as conn:
                    await frame_of(conn, "welcome")
                    for client_id, text in unacked.items():
                        await conn.send(json.dumps({"type": "message", "text": text, "client_id": client_id}))
                    while sent < per_client or unacked:
                        if sent < per_client:
                            client_id = f"{index}-{sent}"
                            unacked[client_id] = f"client {index} message {sent}"
                            await conn.send(json.dumps({"type": "message", "text": unacked[client_id],
                                                        "client_id": client_id}))
                            sent += 1
                            if index == 0 and sent == per_client // 2:
                                cluster.kill("a")  # mid-run, with messages in flight
                                killed.set()
                        deadline = asyncio.get_running_loop().time() + (0.05 if sent < per_client else 5)
                        while True:
                            remaining = deadline - asyncio.get_running_loop().time()
                            if remaining <= 0:
                                break
                            try:
                                frame = json.loads(await asyncio.wait_for(conn.recv(), remaining))
                            except TimeoutError:
                                break
                            messages = frame["messages"] if frame["type"] == "history" else (
                                [frame] if frame["type"] == "message" else [])
                            for message in messages:
                                held[index][message["id"]] = message  # history and live overlap: merge by id
                                last_id = max((last_id or "0-0", message["id"]),
                                              key=lambda i: tuple(map(int, i.split("-"))))
                            if frame["type"] == "ack":
                                acked[frame["client_id"]] = frame["id"]
                                unacked.pop(frame["client_id"], None)
                        if sent >= per_client and not unacked:
                            break
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError):
                pass
            if home == a and killed.is_set():
                home = b  # the load balancer sends A's clients to B
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asyncio.gather(*(run(i) for i in range(clients))), 90)
    assert len(acked) == clients * per_client

    # Everything acked is stored exactly once, in id order, and every client can hold all of it.
    final_token = await asyncio.to_thread(cluster.token, "auditor")
    async with connect(ws(b, "failover"), additional_headers={"Authorization": f"Bearer {final_token}"}) as audit:
        await frame_of(audit, "history")  # the join's last-50
        await audit.send(json.dumps({"type": "resume", "after": "0-0"}))
        stored = await resumed(audit)
    client_ids = [m["client_id"] for m in stored]
    assert len(client_ids) == len(set(client_ids)), "a message was stored twice"
    assert set(client_ids) == set(acked), "an acked message was lost"
    assert {m["client_id"]: m["id"] for m in stored} == acked
    ids = [tuple(map(int, m["id"].split("-"))) for m in stored]
    assert ids == sorted(ids)
    # Each client, after one more resume from where it stopped, holds every acked message exactly once.
    for index in range(0, clients, 7):
        async with connect(ws(b, "failover"), additional_headers={"Authorization": f"Bearer {tokens[index]}"}) \
                as again:
            # From where it stopped: the newest it held when its run ended (not the join's last-50, which
            # may start after messages that others sent once this client was done).
            newest = max(held[index], key=lambda i: tuple(map(int, i.split("-"))))
            for message in (await frame_of(again, "history"))["messages"]:  # the join's last-50
                held[index][message["id"]] = message
            await again.send(json.dumps({"type": "resume", "after": newest}))
            for message in await resumed(again):
                held[index][message["id"]] = message
        assert sorted(held[index]) == sorted(acked.values()), f"client {index} misses messages"


@pytest.mark.anyio
async def test_redis_restart_loses_nothing_acked(tmp_path: Path, redis_prefix: str) -> None:
    from tests.redis_support import redis_server, wait_for

    with redis_server("--appendonly", "yes", "--appendfsync", "always") as (url, process, argv):
        cluster = Cluster(tmp_path, url, redis_prefix)
        restarted: subprocess.Popen[bytes] | None = None
        try:
            cluster.start_provider()
            gateway = cluster.start_gateway("a")
            token = await asyncio.to_thread(cluster.token, "writer")
            acked: dict[str, str] = {}
            refused = 0
            headers = {"Authorization": f"Bearer {token}"}
            sent = 0
            while sent < 60:
                try:
                    async with connect(ws(gateway, "durable"), additional_headers=headers, open_timeout=5) as conn:
                        await frame_of(conn, "welcome")
                        while sent < 60:
                            client_id = f"m{sent}"
                            await conn.send(json.dumps({"type": "message", "text": client_id, "client_id": client_id}))
                            frame = json.loads(await asyncio.wait_for(conn.recv(), 5))
                            while frame["type"] not in ("ack", "error"):
                                frame = json.loads(await asyncio.wait_for(conn.recv(), 5))
                            if frame["type"] == "ack":
                                acked[frame["client_id"]] = frame["id"]
                                sent += 1
                            else:
                                assert frame["code"] == "store_unavailable"
                                refused += 1
                                await asyncio.sleep(0.2)  # resend the same client_id after a pause
                            if sent == 30 and restarted is None:
                                process.terminate()  # Redis goes away mid-run...
                                process.wait(10)
                                restarted = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                             stderr=subprocess.DEVNULL)  # ...and comes back
                except (ConnectionClosed, OSError, InvalidStatus, TimeoutError):
                    await asyncio.sleep(0.2)
            assert restarted is not None
            await asyncio.to_thread(wait_for, url)
            async with connect(ws(gateway, "durable"), additional_headers=headers) as check:
                await frame_of(check, "history")
                await check.send(json.dumps({"type": "resume", "after": "0-0"}))
                stored = await resumed(check)
            assert {m["client_id"]: m["id"] for m in stored} == acked  # all 60, each once
            assert cluster.processes["a"].poll() is None  # the gateway never crashed
        finally:
            cluster.stop()
            if restarted is not None:
                restarted.terminate()
                restarted.wait(10)


def browser_sign_in(base: str, user: str) -> httpx.Client:
    """The real flow at instance `base` with httpx as the browser; the client keeps the cookies."""
    browser = httpx.Client(base_url=base, follow_redirects=False, timeout=10)
    start = browser.get("/login/demo", params={"next": "/chat"})
    authorize = start.headers["location"]
    answer = httpx.post(authorize, data={"sub": user}, follow_redirects=False, timeout=10)
    callback = httpx.URL(answer.headers["location"])
    done = browser.get(callback.raw_path.decode())
    assert done.status_code == 303, done.text
    return browser


@pytest.mark.anyio
async def test_logout_on_a_closes_the_users_socket_on_b_within_a_second(cluster: Cluster) -> None:
    a, b = cluster.urls["a"], cluster.urls["b"]
    browser = await asyncio.to_thread(browser_sign_in, a, "leaver")
    other = await asyncio.to_thread(cluster.token, "stayer")
    try:
        cookie = f"gateway_token={browser.cookies['gateway_token']}"
        async with connect(ws(b, "lobby"), additional_headers={"Cookie": cookie}, origin=b) as on_b, \
                connect(ws(b, "lobby"), additional_headers={"Authorization": f"Bearer {other}"}) as bystander:
            await frame_of(on_b, "welcome")
            await frame_of(bystander, "welcome")
            page = await asyncio.to_thread(browser.get, "/chat")
            csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
            started = time.monotonic()
            answer = await asyncio.to_thread(browser.post, "/logout", data={"csrf": csrf})
            assert answer.status_code in (200, 303)
            error = await frame_of(on_b, "error", timeout=2)
            assert error["code"] == "token_expired"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(on_b.recv(), 2)
            assert on_b.close_code == 4401
            assert time.monotonic() - started < 1.5
            await bystander.send(json.dumps({"type": "ping"}))
            assert (await frame_of(bystander, "pong"))["type"] == "pong"  # others stay
        # The signed-out cookie is refused on B too (the deny-list is shared).
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws(b, "lobby"), additional_headers={"Cookie": cookie}, origin=b):
                pass
        assert refused.value.response.status_code == 401
    finally:
        browser.close()
