"""The room list in a real browser: unread counts and the mention marker from the server, the total in the
tab's title, cleared by visiting the room, and still right after a reload."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, WebSocket, expect

from tests.e2e.conftest import TIMEOUT
from tests.e2e.test_browser import say, sign_in

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)


def test_unread_counts_survive_a_reload_and_clear_when_the_room_is_read(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    bob = sign_in(contexts(), demo_url, "bob")
    sent: list[dict[str, object]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: sent.append(json.loads(payload)))

    bob.on("websocket", on_socket)
    ann = sign_in(contexts(), demo_url, "ann")
    ann.goto(f"{demo_url}/chat/news")
    expect(ann.locator("#status")).to_have_attribute("data-state", "live")
    for text in ("release notes are up", "@bob can you check them?", "thanks!"):
        say(ann, text)
    expect(ann.locator("#messages li.pending")).to_have_count(0)

    bob.reload()  # the list comes from the server: nothing of it lived in bob's browser
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    badge = bob.locator("#rooms a", has_text="#news").locator(".unread")
    expect(badge).to_have_text("@ 3")
    expect(badge).to_have_attribute("aria-label", "3 unread, mentions you")
    expect(bob).to_have_title("(3) #lobby — gateway")

    bob.locator("#rooms a", has_text="#news").click()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob).to_have_title("#news — gateway")
    deadline = time.monotonic() + 5
    while not any(frame.get("type") == "read" for frame in sent) and time.monotonic() < deadline:
        bob.wait_for_timeout(100)
    assert any(frame.get("type") == "read" for frame in sent), "the page never told the server it read #news"

    bob.goto(f"{demo_url}/chat")
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob.locator("#rooms a", has_text="#news")).to_have_count(1)
    expect(bob.locator("#rooms a", has_text="#news").locator(".unread")).to_have_count(0)
    expect(bob).to_have_title("#lobby — gateway")
    say(ann, "one more")
    bob.reload()
    expect(bob.locator("#rooms a", has_text="#news").locator(".unread")).to_have_text("1")
    expect(bob).to_have_title("(1) #lobby — gateway")
