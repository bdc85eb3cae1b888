"""Instances sharing validation answers and the logout deny-list through a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aredis

from gateway.authenticator import Authenticator, Credentials
from gateway.chat.hub import Hub
from gateway.chat.redis_broker import RedisBroker
from gateway.errors import InvalidToken
from gateway.providers import Providers
from gateway.shared import RedisShared
from tests.conftest import FakeIdP, SettingsFactory


class Instance:
    def __init__(self, authenticator: Authenticator, hub: Hub, http: httpx.AsyncClient) -> None:
        self.authenticator, self.hub, self.http = authenticator, hub, http


@pytest.fixture
async def instances(idp: FakeIdP, make_settings: SettingsFactory, redis_url: str,
                    redis_prefix: str) -> AsyncIterator[list[Instance]]:
    made: list[Instance] = []
    for _ in range(2):
        settings = make_settings(broker_url=redis_url, redis_prefix=redis_prefix)
        http = httpx.AsyncClient()
        authenticator = Authenticator(settings, Providers(settings, http))
        broker = RedisBroker(redis_url, redis_prefix)
        hub = Hub(broker)
        shared = RedisShared(broker.redis, redis_prefix, broker.announce)
        authenticator.cache.shared = shared
        authenticator.denied.shared = shared
        hub.handlers["_deny"] = lambda e, a=authenticator: a.denied.remember(e["key"], e["until"])
        await hub.start()
        made.append(Instance(authenticator, hub, http))
    yield made
    for instance in made:
        await instance.hub.stop()
        await instance.http.aclose()


@pytest.mark.anyio
async def test_instances_cost_the_provider_one_call_per_token(instances: list[Instance], idp: FakeIdP) -> None:
    a, b = instances
    tokens = [idp.issue_token(f"u{i}") for i in range(20)]
    for token in tokens:
        await a.authenticator.principal(Credentials(token, "header"))
    calls = idp.mock.routes["userinfo"].call_count
    assert calls == 20
    principals = await asyncio.gather(*(b.authenticator.principal(Credentials(t, "header")) for t in tokens))
    assert idp.mock.routes["userinfo"].call_count == calls  # B used A's answers
    assert [p.subject for p in principals] == [f"u{i}" for i in range(20)]


@pytest.mark.anyio
async def test_shared_values_hold_no_token(instances: list[Instance], idp: FakeIdP, redis_url: str,
                                           redis_prefix: str) -> None:
    a, _ = instances
    token = idp.issue_token("secretive")
    await a.authenticator.principal(Credentials(token, "header"))
    client = aredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        assert keys and all(token.encode() not in k for k in keys)
        for key in keys:
            if (await client.type(key)) == b"string":
                assert token.encode() not in (await client.get(key) or b"")
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_an_invalid_answer_is_shared_too(instances: list[Instance], idp: FakeIdP) -> None:
    a, b = instances
    with pytest.raises(InvalidToken):
        await a.authenticator.principal(Credentials("not-issued", "header"))
    with pytest.raises(InvalidToken):
        await b.authenticator.principal(Credentials("not-issued", "header"))
    assert idp.mock.routes["userinfo"].call_count == 1


@pytest.mark.anyio
async def test_a_logout_on_a_is_refused_on_b(instances: list[Instance], idp: FakeIdP) -> None:
    a, b = instances
    token = idp.issue_token("leaver")
    credentials = Credentials(token, "header")
    await b.authenticator.principal(credentials)  # B has it cached as valid
    await a.authenticator.deny(credentials)
    for _ in range(50):
        try:
            await b.authenticator.principal(credentials)
        except InvalidToken:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("B still accepts a token signed out on A")


@pytest.mark.anyio
async def test_a_late_instance_loads_the_deny_list(instances: list[Instance], idp: FakeIdP, redis_url: str,
                                                  redis_prefix: str, make_settings: SettingsFactory) -> None:
    a, _ = instances
    token = idp.issue_token("gone")
    await a.authenticator.deny(Credentials(token, "header"))
    settings = make_settings(broker_url=redis_url, redis_prefix=redis_prefix)
    async with httpx.AsyncClient() as http:
        late = Authenticator(settings, Providers(settings, http))
        broker = RedisBroker(redis_url, redis_prefix)
        shared = RedisShared(broker.redis, redis_prefix, broker.announce)
        await shared.load_denied(late.denied)
        await broker.redis.aclose()
        await broker._reader.aclose()
        with pytest.raises(InvalidToken):
            await late.principal(Credentials(token, "header"))


