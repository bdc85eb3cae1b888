"""Browser fixtures: the real `gateway demo` in a subprocess and Debian's Chromium driven by Playwright.

Never runs `playwright install`: the browser is the system one at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NO_CHROMIUM = f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
START_TIMEOUT = 20.0
TIMEOUT = 10_000  # ms, for every auto-waiting assertion and browser action


def _require_chromium() -> None:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    if os.environ.get("GATEWAY_REQUIRE_BROWSER") == "1":
        pytest.fail(NO_CHROMIUM)
    pytest.skip(NO_CHROMIUM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_log(log: Path) -> str:
    return log.read_text("utf-8", "replace")


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway demo exited with {process.returncode} before /healthz answered:\n"
                        f"{_read_log(log)}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gateway demo did not answer {base_url}/healthz within {START_TIMEOUT:.0f}s:\n"
                f"{_read_log(log)}")


DEMO_LOG = pytest.StashKey[Path]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failed test's report carries the demo server's log so far, shown after the traceback.
    report = yield
    module = item.getparent(pytest.Module)
    log = module.stash.get(DEMO_LOG, None) if module is not None else None
    if report.failed and log is not None and log.exists():
        report.sections.append(("gateway demo log", _read_log(log)))
    return report


@pytest.fixture(scope="module")
def demo_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `gateway demo` on a free loopback port; yields its base URL."""
    with running_demo(request, tmp_path_factory) as base_url:
        yield base_url


@contextmanager
def running_demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 settings: dict[str, str] | None = None) -> Iterator[str]:
    """`gateway demo` on a free loopback port, with these GATEWAY_* `settings` only; yields its base URL."""
    _require_chromium()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gateway-demo") / "demo.log"
    # The demo still reads GATEWAY_* settings from the environment: a developer's shell must not leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")} | (settings or {})
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env,
            cwd=log.parent,  # its SQLite history lands there, not in the checkout
        )
    request.node.stash[DEMO_LOG] = log
    try:
        _wait_healthy(base_url, process, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def browser(demo_url: str) -> Iterator[Browser]:
    """One headless system Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


OUTSIDE = re.compile(r"^(?!(?:https?|wss?)://127\.0\.0\.1[:/])[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def stay_on_loopback(context: BrowserContext) -> None:
    """Tests never reach the internet: a request for anything but 127.0.0.1 fails in the browser (the
    provider `python -m oidc_provider_mock` runs with its own pages, which link a CDN stylesheet). The
    request is still seen by listeners, so a test can assert there was none."""
    context.route(OUTSIDE, lambda route: route.abort())


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    """A factory of isolated browser contexts (separate cookie jars), all closed after the test."""
    opened: list[BrowserContext] = []

    def new_context() -> BrowserContext:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT)
        stay_on_loopback(context)
        opened.append(context)
        return context

    yield new_context
    for context in opened:
        context.close()
