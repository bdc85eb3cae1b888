"""Hubs a test starts, stopped together when it ends: the `running_hubs` fixture (registered in
tests/conftest.py) for tests that make several hubs over brokers of their choosing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.chat.broker import Broker
from gateway.chat.hub import Hub, HubLimits


class RunningHubs:
    """The hubs started so far, in order; `stop` stops each of them."""

    def __init__(self) -> None:
        self.started: list[Hub] = []

    async def start(self, broker: Broker, limits: HubLimits) -> Hub:
        """A hub over `broker`, started; kept for `stop` only once it started."""
        hub = Hub(broker, limits)
        await hub.start()
        self.started.append(hub)
        return hub

    async def stop(self) -> None:
        for hub in self.started:
            await hub.stop()


@pytest.fixture
async def running_hubs() -> AsyncIterator[RunningHubs]:
    hubs = RunningHubs()
    yield hubs
    await hubs.stop()
