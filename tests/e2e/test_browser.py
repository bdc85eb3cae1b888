"""End to end in a real browser: sign-in through the demo provider's form, then chat between two users."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Dialog, Locator, Page, expect

from tests.e2e.conftest import TIMEOUT

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)


def sign_in(context: BrowserContext, base_url: str, name: str) -> Page:
    """Open /chat, follow the login page to the provider, authorize as `name`; returns the live chat page."""
    page = context.new_page()
    page.goto(f"{base_url}/chat")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_role("link", name="Sign in with Demo provider").click()
    page.locator("input[name=sub]").fill(name)
    page.get_by_role("button", name="Authorize", exact=True).click()
    expect(page).to_have_url(f"{base_url}/chat")
    expect(page.locator("#me")).to_contain_text(name)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    return page


def say(page: Page, text: str) -> None:
    box = page.locator("#text")
    expect(box).to_be_enabled()
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def message(page: Page, who: str, text: str) -> Locator:
    """The chat line(s) by `who` whose text contains `text`."""
    return page.locator("#messages li.message").filter(
        has=page.locator(".who", has_text=who)).filter(has=page.locator(".text", has_text=text))


def test_two_users_chat(demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    alice = sign_in(contexts(), demo_url, "alice")
    bob = sign_in(contexts(), demo_url, "bob")

    say(alice, "hello bob, it's alice")
    expect(message(bob, "alice", "hello bob, it's alice")).to_be_visible()
    mine = message(alice, "alice", "hello bob, it's alice")
    expect(mine).to_be_visible()
    expect(mine).to_have_class(re.compile(r"\bmine\b"))

    say(bob, "hi alice, bob here")
    expect(message(alice, "bob", "hi alice, bob here")).to_be_visible()
    expect(message(alice, "bob", "hi alice, bob here")).not_to_have_class(re.compile(r"\bmine\b"))
    expect(message(bob, "bob", "hi alice, bob here")).to_have_class(re.compile(r"\bmine\b"))


def test_anonymous_visitor_is_sent_to_login(demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    page = contexts().new_page()
    page.goto(f"{demo_url}/chat")
    expect(page.get_by_role("link", name="Sign in with Demo provider")).to_be_visible()
    assert urlsplit(page.url).path == "/login"
    expect(page.locator("#messages")).to_have_count(0)


def test_markup_in_a_message_is_shown_as_text(demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    payload = "<img src=x onerror=alert(1)>"
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    alice = sign_in(contexts(), demo_url, "alice")
    bob = sign_in(contexts(), demo_url, "bob")
    for page in (alice, bob):
        page.on("dialog", record)

    say(alice, payload)
    shown = bob.locator("#messages li.message .text").filter(has_text=payload)
    expect(shown).to_have_count(1)
    expect(shown).to_have_text(payload)
    expect(alice.locator("#messages li.message .text").filter(has_text=payload)).to_have_count(1)
    # Both pages have rendered it by now; an <img src=x> would already be in the DOM and have errored.
    expect(bob.locator("#messages img")).to_have_count(0)
    expect(alice.locator("#messages img")).to_have_count(0)
    assert dialogs == []
