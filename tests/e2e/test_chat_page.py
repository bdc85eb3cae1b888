"""The chat page in a real browser against `gateway serve` (own processes for the gateway and the OpenID
provider, so the gateway can restart while the provider keeps its sessions): presence, history after a
reload, reconnect + resume after a restart with every message shown once, and screenshots."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port, _require_chromium, stay_on_loopback
from tests.processes import stop_all, wait_until_answers

pytestmark = pytest.mark.browser

SECRET = "e2e-secret-key-0123456789-abcdefghijklmnop"
SHOTS = Path(__file__).resolve().parents[2] / "test-results"


class Stack:
    """An OpenID provider and a gateway, each its own process; the gateway can be restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.provider_port, self.port = _free_port(), _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {
            "GATEWAY_PUBLIC_URL": self.base,
            "GATEWAY_SECRET_KEYS": SECRET,
            "GATEWAY_PROVIDERS__DEMO__ISSUER": f"http://127.0.0.1:{self.provider_port}",
            "GATEWAY_PROVIDERS__DEMO__CLIENT_ID": "gateway-e2e",
            "GATEWAY_PROVIDERS__DEMO__CLIENT_SECRET": "e2e",
            "GATEWAY_PROVIDERS__DEMO__TITLE": "Demo provider",
            "GATEWAY_HISTORY_PATH": str(workdir / "history.sqlite3"),
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.gateway: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            process = subprocess.Popen(args, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                       stdout=sink, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def start_provider(self) -> None:
        log = self.workdir / "provider.log"
        process = self._spawn([sys.executable, "-m", "oidc_provider_mock", "-p", str(self.provider_port)], log)
        wait_until_answers(f"http://127.0.0.1:{self.provider_port}/.well-known/openid-configuration", process, log)

    def start_gateway(self) -> None:
        log = self.workdir / "gateway.log"
        self.gateway = self._spawn([sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port)], log)
        wait_until_answers(f"{self.base}/healthz", self.gateway, log)

    def stop_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.terminate()  # SIGTERM: uvicorn closes sockets with 1012 (service restart)
        self.gateway.wait(15)

    def stop(self) -> None:
        stop_all(self.processes)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_chromium()
    stack = Stack(tmp_path_factory.mktemp("stack"))
    try:
        stack.start_provider()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_chat(browser: object, stack: Stack, user: str, room: str, width: int = 1280, height: int = 800) -> object:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": width, "height": height})
    stay_on_loopback(context)  # this provider (python -m oidc_provider_mock) links a CDN stylesheet
    page = context.new_page()
    page.goto(f"{stack.base}/chat/{room}")
    page.get_by_role("link", name="Sign in with Demo provider").click()
    page.locator("input[name=sub]").fill(user)
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=10_000)
    return page


def say(page: object, text: str) -> None:
    page.locator("#text").fill(text)  # type: ignore[attr-defined]
    page.locator("#text").press("Enter")  # type: ignore[attr-defined]


def messages_with(page: object, text: str) -> object:
    return page.locator("#messages li.message:not(.pending) .text", has_text=text)  # type: ignore[attr-defined]


def test_presence_history_restart_and_screenshots(stack: Stack, browser: object) -> None:
    from playwright.sync_api import expect

    alice = open_chat(browser, stack, "alice", "design")
    bob = open_chat(browser, stack, "bob", "design")
    for page in (alice, bob):
        expect(page.locator("#people li", has_text="alice")).to_have_count(1)  # type: ignore[attr-defined]
        expect(page.locator("#people li", has_text="bob")).to_have_count(1)  # type: ignore[attr-defined]

    say(alice, "Morning! Shall we ship the login gateway today?")
    say(bob, "Yes, once the browser tests are green.")
    say(alice, "<img src=x onerror=alert(1)> renders as text, by the way")
    for page in (alice, bob):
        expect(messages_with(page, "Yes, once the browser tests are green.")).to_have_count(1)
        expect(messages_with(page, "renders as text")).to_have_count(1)
        assert page.locator("#messages img").count() == 0  # type: ignore[attr-defined]

    bob.reload()  # type: ignore[attr-defined]
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")  # type: ignore[attr-defined]
    expect(messages_with(bob, "Shall we ship")).to_have_count(1)  # history after a reload

    stack.stop_gateway()
    expect(alice.locator("#status")).not_to_have_attribute("data-state", "live")  # type: ignore[attr-defined]
    say_while_down = "sent right after the restart"
    stack.start_gateway()
    expect(alice.locator("#status")).to_have_attribute("data-state", "live",  # type: ignore[attr-defined]
                                                       timeout=20_000)
    expect(bob.locator("#status")).to_have_attribute("data-state", "live",  # type: ignore[attr-defined]
                                                     timeout=20_000)
    say(bob, say_while_down)
    for page in (alice, bob):
        expect(messages_with(page, say_while_down)).to_have_count(1)
        for text in ("Shall we ship", "Yes, once the browser tests", "renders as text"):
            expect(messages_with(page, text)).to_have_count(1)  # every message once, none twice

    SHOTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(SHOTS / "chat-desktop.png"))  # type: ignore[attr-defined]
    phone = open_chat(browser, stack, "carol", "design", width=390, height=844)
    expect(messages_with(phone, say_while_down)).to_have_count(1)
    phone.screenshot(path=str(SHOTS / "chat-390.png"))  # type: ignore[attr-defined]
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # type: ignore[attr-defined]
