"""History you can scroll, in a real browser: older pages load on the button and on scrolling to the top,
keep what the reader looks at in place, and come in order; day separators and full dates on hover."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

from tests.e2e.conftest import TIMEOUT, running_demo, stay_on_loopback
from tests.e2e.test_browser import sign_in
from tests.e2e.test_outbox_browser import shown_texts, submit_all

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)
COUNT = 130


@pytest.fixture(scope="module")
def demo_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A room of 130 messages filled quickly: this module is about reading them, not about the rate limit.
    with running_demo(request, tmp_path_factory, {"GATEWAY_MESSAGE_RATE": "1000",
                                                  "GATEWAY_MESSAGE_BURST": "1000"}) as url:
        yield url


def enter(page: Page, base: str, room: str) -> None:
    page.goto(f"{base}/chat/{room}")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def test_older_pages_load_in_order_and_keep_the_scroll_position(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    texts = [f"old {i:03d}" for i in range(COUNT)]
    alice = sign_in(contexts(), demo_url, "alice")
    enter(alice, demo_url, "scroll")
    submit_all(alice, texts)
    expect(alice.locator("#messages li.message:not(.pending)")).to_have_count(COUNT, timeout=30_000)

    bob = sign_in(contexts(), demo_url, "bob")
    enter(bob, demo_url, "scroll")
    expect(bob.locator("#messages li.message")).to_have_count(50)
    assert shown_texts(bob) == texts[-50:]
    anchor = bob.locator("#messages li.message", has_text="old 100")  # mid-list: the scroll itself loads nothing
    anchor.scroll_into_view_if_needed()
    before = anchor.bounding_box()
    bob.get_by_role("button", name="Load older messages").click()
    expect(bob.locator("#messages li.message")).to_have_count(100)
    after = anchor.bounding_box()
    assert before is not None and after is not None and abs(before["y"] - after["y"]) < 2  # nothing jumped
    assert shown_texts(bob) == texts[-100:]

    bob.locator("#messages").evaluate("list => { list.scrollTop = 0; }")  # scrolling to the top loads more
    expect(bob.locator("#messages li.message")).to_have_count(COUNT)
    assert shown_texts(bob) == texts
    expect(bob.locator("#older")).to_be_hidden()  # nothing older: no dead end, no button
    expect(bob.locator("#messages li.day")).to_have_text(["Today"])


def test_day_separators_and_full_dates_on_hover(demo_url: str, browser: object) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(TIMEOUT)
    stay_on_loopback(context)
    try:
        page = sign_in(context, demo_url, "zoe")
        day = 86_400_000
        now = int(time.time() * 1000)
        stamps = [now - 3 * day, now - 3 * day + 60_000, now - day, now]

        def fake_server(socket: WebSocketRoute) -> None:
            user = {"id": "demo:zoe", "name": "zoe"}
            messages = [{"type": "message", "id": f"{ts}-0", "room": "days", "user": user, "text": f"m{i}",
                         "ts": ts} for i, ts in enumerate(stamps)]
            for frame in ({"type": "welcome", "user": user, "room": "days", "server_time": now},
                          {"type": "history", "messages": messages, "truncated": False},
                          {"type": "presence", "users": [user]}):
                socket.send(json.dumps(frame))

        page.route_web_socket(re.compile(r"/ws/days"), fake_server)
        enter(page, demo_url, "days")
        expect(page.locator("#messages li.message")).to_have_count(4)
        separators = page.locator("#messages li.day")
        expect(separators).to_have_count(3)
        three_days_ago = time.strftime("%-d %B %Y", time.gmtime((now - 3 * day) / 1000))
        expect(separators.nth(0)).to_contain_text(three_days_ago)
        expect(separators.nth(1)).to_have_text("Yesterday")
        expect(separators.nth(2)).to_have_text("Today")
        first_time = page.locator("#messages li.message time").first
        assert three_days_ago in (first_time.get_attribute("title") or "")
    finally:
        context.close()
