"""GATEWAY_GC_THRESHOLD: where the gateway runs its own server (`gateway serve`, `Gateway.serve`), the cyclic
garbage collector runs with its thresholds (a reconnect storm's CPU was mostly the collector's,
bench/README.md); an app that only installs the gateway keeps its own."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

import gateway.cli as cli
from gateway import Gateway
from tests.conftest import SettingsFactory


@pytest.fixture
def thresholds_at_run(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int, int]]]:
    """The collector's thresholds when the server would start serving (it does not: run is replaced)."""
    seen: list[tuple[int, int, int]] = []

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        seen.append(gc.get_threshold())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(cli, "setup_logging", lambda *args: None)  # the test process keeps its logging
    monkeypatch.setattr("gateway.logs.setup_logging", lambda *args: None)
    before = gc.get_threshold()
    try:
        yield seen
    finally:
        gc.set_threshold(*before)


def test_gateway_serve_runs_with_the_settings_thresholds(make_settings: SettingsFactory,
                                                         thresholds_at_run: list[tuple[int, int, int]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        cli._serve(make_settings(gc_threshold="12345,6,7"), sock, "127.0.0.1", 0, "warning")
    assert thresholds_at_run == [(12345, 6, 7)]


def test_the_default_is_the_tuned_one(make_settings: SettingsFactory,
                                      thresholds_at_run: list[tuple[int, int, int]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        cli._serve(make_settings(), sock, "127.0.0.1", 0, "warning")
    assert thresholds_at_run == [(50_000, 10, 10)]


def test_the_librarys_serve_runs_with_them_and_installing_changes_nothing(
        make_settings: SettingsFactory, thresholds_at_run: list[tuple[int, int, int]]) -> None:
    before = gc.get_threshold()
    chat = Gateway(make_settings(gc_threshold="23456,7,8"))
    app = FastAPI(lifespan=chat.lifespan)
    chat.install(app)
    assert gc.get_threshold() == before  # an app of yours: its process, its collector
    chat.serve(app, port=0)
    assert thresholds_at_run == [(23456, 7, 8)]
