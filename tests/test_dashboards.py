"""docs/grafana-dashboard.json and docs/alerts.yml use only metrics a running gateway exposes, and cover
what an operator pages on: the store, the providers, 503s and socket closes by code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory
from tests.live import free_port, live_server

DOCS = Path(__file__).resolve().parent.parent / "docs"
DASHBOARD = DOCS / "grafana-dashboard.json"
ALERTS = DOCS / "alerts.yml"
METRICS_TOKEN = "dashboard-metrics-token-0123456789-abc"
METRIC = re.compile(r"\bgateway_[a-z_]+\b")
# What a family's series are called in PromQL (counters gain _total; histograms _bucket, _sum, _count).
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


@pytest.fixture
def exposed(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[set[str]]:
    """Every series name GET /metrics offers, scraped from a gateway under uvicorn before any client did
    anything: a fresh instance must already offer what the dashboard and the alerts ask for."""
    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}", metrics_token=METRICS_TOKEN)
    with live_server(create_app(settings), port) as address:
        answer = httpx.get(f"http://{address}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    names = set()
    for family in text_string_to_metric_families(answer.text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ())}
    yield names


def expressions(node: Any) -> list[str]:
    """Every `expr` in a JSON or YAML document, wherever it is nested."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            found += [value] if key == "expr" else expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += expressions(item)
    return found


def used_metrics(document: Any) -> set[str]:
    """Metric names in PromQL; label values ("...") are not names."""
    return {name for expr in expressions(document) for name in METRIC.findall(re.sub(r'"[^"]*"', '""', expr))}


def test_a_running_gateway_offers_the_metrics_operators_need(exposed: set[str]) -> None:
    assert {"gateway_store_up", "gateway_provider_ready", "gateway_handshakes_total", "gateway_socket_closes_total",
            "gateway_provider_call_seconds_bucket"} <= exposed
    assert "gateway_no_such_metric_total" not in exposed


def test_every_metric_the_dashboard_uses_exists(exposed: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = used_metrics(dashboard)

    assert len(dashboard["panels"]) >= 8 and all(panel["targets"] for panel in dashboard["panels"])
    assert len(used) >= 8
    assert used - exposed == set()


def test_every_metric_the_alerts_use_exists(exposed: set[str]) -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]

    assert used_metrics(rules) - exposed == set()
    for rule in rules:
        assert rule["alert"] and rule["expr"] and rule["labels"]["severity"] in ("page", "ticket"), rule
        assert rule["annotations"]["summary"], rule


def test_the_alerts_cover_providers_503s_the_store_and_close_codes() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]
    exprs = " ".join(" ".join(rule["expr"].split()) for rule in rules)

    assert "gateway_provider_ready" in exprs
    assert 'gateway_handshakes_total{result="provider_unavailable"}' in exprs
    assert "gateway_store_up" in exprs
    assert {"1011", "4408", "4429"} <= set(re.findall(r'gateway_socket_closes_total\{code="(\d+)"\}', exprs))


def test_the_metric_name_finder_reads_promql() -> None:
    document = {"panels": [{"targets": [{"expr": 'sum(rate(gateway_a_total{x="gateway_not_a_metric"}[5m]))'}]}],
                "rules": [{"expr": "histogram_quantile(0.9, gateway_b_bucket) > up"}]}

    assert used_metrics(document) == {"gateway_a_total", "gateway_b_bucket"}
