"""Typing indicators and @mentions in a real browser: "ann is typing…" shown and cleared; the composer's
autocomplete from the room's members; the mention highlighted for the one mentioned; a notification while
their tab is hidden, once they opted in (the permission granted to the browser context)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT, stay_on_loopback
from tests.e2e.test_browser import message, say, sign_in

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)

# Lets the test hide the tab (document.hidden) and records the notifications the page shows.
PAGE_HOOKS = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => hidden });
  window.__setHidden = (value) => { hidden = value; document.dispatchEvent(new Event("visibilitychange")); };
  window.__notes = [];
  const Real = window.Notification;
  class Recorded extends Real {
    constructor(title, options) {
      window.__notes.push({ title, body: options && options.body });
      super(title, options);
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def two(browser: Browser) -> Iterator[tuple[BrowserContext, BrowserContext]]:
    made = [browser.new_context(permissions=["notifications"]) for _ in range(2)]
    for context in made:
        context.set_default_timeout(TIMEOUT)
        stay_on_loopback(context)
        context.add_init_script(PAGE_HOOKS)
    yield made[0], made[1]
    for context in made:
        context.close()


def in_room(page: Page, base: str, room: str) -> None:
    page.goto(f"{base}/chat/{room}")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def test_typing_is_shown_then_cleared(demo_url: str, two: tuple[BrowserContext, BrowserContext]) -> None:
    ann, bob = sign_in(two[0], demo_url, "ann"), sign_in(two[1], demo_url, "bob")
    for page in (ann, bob):
        in_room(page, demo_url, "typing")
    ann.locator("#text").press_sequentially("hello th", delay=30)
    expect(bob.locator("#typing")).to_have_text("ann is typing…")
    expect(ann.locator("#typing")).to_have_text("")  # not about oneself
    ann.locator("#text").press("Enter")
    expect(message(bob, "ann", "hello th")).to_have_count(1)
    expect(bob.locator("#typing")).to_have_text("")  # the message ends it at once
    ann.locator("#text").press_sequentially("still going", delay=20)
    expect(bob.locator("#typing")).to_have_text("ann is typing…")
    expect(bob.locator("#typing")).to_have_text("", timeout=8000)  # and silence ends it after 4 s


def test_a_mention_autocompletes_highlights_and_notifies_while_hidden(
        demo_url: str, two: tuple[BrowserContext, BrowserContext]) -> None:
    ann, bob = sign_in(two[0], demo_url, "ann"), sign_in(two[1], demo_url, "bobby")
    for page in (ann, bob):
        in_room(page, demo_url, "mentions")
    expect(ann.locator("#people li", has_text="bobby")).to_have_count(1)
    bob.get_by_label("Notify me when mentioned").check()
    expect(bob.get_by_label("Notify me when mentioned")).to_be_checked()
    bob.evaluate("window.__setHidden(true)")

    box = ann.locator("#text")
    box.press_sequentially("ping @bo", delay=20)
    options = ann.get_by_role("listbox", name="People to mention").get_by_role("option")
    expect(options).to_have_text(["@bobby"])
    expect(box).to_have_attribute("aria-expanded", "true")
    box.press("Enter")  # picks the name, does not send
    expect(box).to_have_value("ping @bobby ")
    box.press_sequentially("the build is green")
    box.press("Enter")

    line = message(bob, "ann", "the build is green")
    expect(line.locator("mark.mention")).to_have_text("@bobby")
    expect(line).to_have_class("message mentions-me")
    expect(message(ann, "ann", "the build is green").locator("mark")).to_have_count(0)  # only for bobby
    notes = bob.evaluate("window.__notes")
    assert notes == [{"title": "ann mentioned you in #mentions", "body": "ping @bobby the build is green"}]

    bob.evaluate("window.__setHidden(false)")
    say(ann, "and once more @bobby")  # visible now: no notification
    expect(message(bob, "ann", "and once more").locator("mark.mention")).to_have_count(1)
    assert len(bob.evaluate("window.__notes")) == 1
