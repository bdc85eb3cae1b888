"""Prometheus metrics. The cores keep plain counters (no prometheus import there); one collector per app
reads them at scrape time. Labels never carry a user, room or token."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.app import Gateway

HANDSHAKE_RESULTS = ("ok", "unauthenticated", "invalid_request", "invalid_token", "forbidden", "bad_origin",
                     "provider_unavailable", "rate_limited")


@dataclass
class Stats:
    """Counters the request path bumps; cheap (a dict increment), read only when scraped."""

    handshakes: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    store_up: bool = True  # set by GET /metrics just before it renders (the check is async)

    def handshake(self, result: str) -> None:
        self.handshakes[result if result in HANDSHAKE_RESULTS else "forbidden"] += 1


class ProviderCalls:
    """Latency and outcome of every provider call, by provider and strategy."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram("gateway_provider_call_seconds", "Time spent in calls to identity providers",
                                 ["provider", "strategy"], registry=registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def observe(self, provider: str, strategy: str, seconds: float) -> None:
        self.seconds.labels(provider, strategy).observe(seconds)


class GatewayCollector(Collector):
    def __init__(self, gateway: Gateway, stats: Stats) -> None:
        self.gateway = gateway
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        hub = self.gateway.hub
        yield GaugeMetricFamily("gateway_open_sockets", "Chat sockets open on this instance",
                                value=hub.open_sockets())
        yield GaugeMetricFamily("gateway_store_up", "1 when the chat's store (Redis; SQLite with the memory "
                                "broker) answered at this scrape, else 0", value=float(self.stats.store_up))
        ready = GaugeMetricFamily("gateway_provider_ready", "1 when a provider's discovery is loaded and it "
                                  "accepts the gateway's credentials, else 0", labels=["provider"])
        for provider in self.gateway.providers:
            ready.add_metric([provider.name], float(provider.ready))
        yield ready
        handshakes = CounterMetricFamily("gateway_handshakes", "WebSocket handshakes by result", labels=["result"])
        for result in HANDSHAKE_RESULTS:
            handshakes.add_metric([result], self.stats.handshakes[result])
        yield handshakes
        closes = CounterMetricFamily("gateway_socket_closes", "Chat sockets closed by the server, by code",
                                     labels=["code"])
        for code, count in sorted(self.stats.closes.items()):
            closes.add_metric([str(code)], count)
        yield closes
        cache = self.gateway.authenticator.cache
        lookups = CounterMetricFamily("gateway_validation_cache", "Token validation cache lookups", labels=["result"])
        lookups.add_metric(["hit"], cache.hits)
        lookups.add_metric(["miss"], cache.misses)
        yield lookups
        calls = CounterMetricFamily("gateway_provider_calls", "Calls to identity providers",
                                    labels=["provider", "strategy"])
        for provider in self.gateway.providers:
            calls.add_metric([provider.name, provider.validator.strategy], provider.http.calls)
        yield calls
        yield CounterMetricFamily("gateway_messages_in", "Chat messages received from clients",
                                  value=hub.messages_in)
        yield CounterMetricFamily("gateway_messages_out", "Chat frames queued to clients (fan-out deliveries)",
                                  value=hub.deliveries)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stats = Stats()
        self.provider_calls = ProviderCalls(self.registry)

    def attach(self, gateway: Gateway) -> None:
        self.registry.register(GatewayCollector(gateway, self.stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)

