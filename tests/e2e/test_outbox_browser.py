"""The page's outbox in a real browser: a burst over the rate limit arrives whole and in order on both
users' screens; a message refused for good is shown as failed, with Retry and Delete."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocket, expect

from tests.e2e.conftest import TIMEOUT
from tests.e2e.test_browser import sign_in

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)

BURST = 60


def record_frames(page: Page) -> list[dict[str, Any]]:
    """Every frame the page's chat sockets receive, decoded."""
    received: list[dict[str, Any]] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: received.append(json.loads(payload)))

    page.on("websocket", on_socket)
    return received


def submit_all(page: Page, texts: list[str]) -> None:
    """Type and send each text through the composer, as fast as the page can: a real burst."""
    page.evaluate("""(texts) => {
        const input = document.getElementById("text"), form = document.getElementById("composer");
        for (const text of texts) { input.value = text; form.requestSubmit(); }
    }""", texts)


def shown_texts(page: Page) -> list[str]:
    return page.locator("#messages li.message:not(.pending):not(.failed) .text").all_text_contents()


def test_a_burst_over_the_rate_limit_arrives_complete_and_in_order(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    alice = sign_in(contexts(), demo_url, "alice")
    frames = record_frames(alice)
    alice.goto(f"{demo_url}/chat/burst")
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    bob = sign_in(contexts(), demo_url, "bob")
    bob.goto(f"{demo_url}/chat/burst")
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")

    texts = [f"burst {i:02d}" for i in range(BURST)]
    submit_all(alice, texts)
    # The server takes 10 at once and 5 a second after that: about 10 s for the rest.
    expect(alice.locator("#notice")).to_contain_text("waiting")
    for page in (alice, bob):
        expect(page.locator("#messages li.message:not(.pending) .text",
                            has_text=re.compile(r"^burst \d\d$"))).to_have_count(BURST, timeout=40_000)
        assert shown_texts(page) == texts
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    expect(alice.locator("#notice")).to_be_hidden()

    refusals = [f for f in frames if f["type"] == "error" and f["code"] == "rate_limited"]
    assert refusals, "the burst never hit the rate limit: the test proves nothing"
    assert all(isinstance(f["retry_after"], int) and f["retry_after"] >= 1 and f["client_id"] for f in refusals)
    acked = [f["client_id"] for f in frames if f["type"] == "ack"]
    assert len(acked) == len(set(acked)) == BURST  # each stored once, none twice

    bob.reload()  # stored, not only shown: a join brings the newest 50 (GATEWAY_HISTORY_ON_JOIN)
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(bob.locator("#messages li.message .text", has_text=re.compile(r"^burst \d\d$"))).to_have_count(50)
    assert shown_texts(bob) == texts[-50:]


def test_a_message_refused_for_good_is_marked_failed_with_retry_and_delete(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    alice = sign_in(contexts(), demo_url, "alice")
    alice.goto(f"{demo_url}/chat/refusals")
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    submit_all(alice, ["x" * 2001, "after the big one"])  # the text box stops at 2000; a script need not
    failed = alice.locator("#messages li.failed")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("Not sent: text is limited to 2000 characters")
    # The refusal does not hold back what follows.
    expect(alice.locator("#messages li.message:not(.pending) .text", has_text="after the big one")).to_have_count(1)

    failed.get_by_role("button", name="Retry").click()
    expect(alice.locator("#messages li.failed")).to_have_count(1)  # refused again, shown again
    alice.locator("#messages li.failed").get_by_role("button", name="Delete").click()
    expect(alice.locator("#messages li.failed")).to_have_count(0)
    alice.reload()
    expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    expect(alice.locator("#messages li.failed")).to_have_count(0)  # deleted from the saved outbox too
