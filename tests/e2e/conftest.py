"""Browser fixtures: the real `gateway demo` in a subprocess and Debian's Chromium driven by Playwright.

Never runs `playwright install`: the browser is the system one at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NO_CHROMIUM = f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
START_TIMEOUT = 20.0


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


def _read_log(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Remember failures on the module so the demo fixture can print the server log at teardown.
    report = yield
    module = getattr(item, "module", None)
    if report.failed and module is not None:
        module.__dict__["_gateway_e2e_failed"] = True
    return report


@pytest.fixture(scope="module")
def demo_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Start `gateway demo` on a free loopback port; yields its base URL."""
    _require_chromium()
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "demo", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
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
            if request.module.__dict__.get("_gateway_e2e_failed"):
                print(f"\n----- gateway demo log ({base_url}) -----\n{_read_log(log)}", file=sys.stderr)


@pytest.fixture(scope="module")
def browser(demo_url: str) -> Iterator[Any]:
    """One headless system Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
