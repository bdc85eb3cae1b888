"""Editing and deleting one's own message in a real browser: the other user sees both live and after a
reload; nobody gets Edit or Delete on another user's message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT
from tests.e2e.test_browser import message, say, sign_in

pytestmark = pytest.mark.browser

expect.set_options(timeout=TIMEOUT)


def in_room(page: Page, base: str) -> None:
    page.goto(f"{base}/chat/edits")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def test_edit_and_delete_reach_the_other_user_live_and_after_a_reload(
        demo_url: str, contexts: Callable[[], BrowserContext]) -> None:
    ann, bob = sign_in(contexts(), demo_url, "ann"), sign_in(contexts(), demo_url, "bob")
    for page in (ann, bob):
        in_room(page, demo_url)
    say(ann, "teh typo")
    say(ann, "a message to take back")
    say(bob, "bob's own words")
    expect(message(ann, "bob", "bob's own words")).to_have_count(1)
    # Another user's message offers no Edit or Delete.
    expect(message(ann, "bob", "bob's own words").get_by_role("button")).to_have_count(0)

    typo = message(ann, "ann", "teh typo")
    typo.hover()
    typo.get_by_role("button", name="Edit").click()
    box = ann.get_by_role("textbox", name="Edit your message")
    expect(box).to_be_focused()
    box.fill("the *typo*, fixed")
    box.press("Enter")
    fixed = message(bob, "ann", "the typo, fixed")
    expect(fixed).to_have_count(1)
    expect(fixed.locator("em")).to_have_text("typo")
    expect(fixed.locator(".edited")).to_have_text("(edited)")

    ann.once("dialog", lambda dialog: dialog.accept())
    gone = message(ann, "ann", "a message to take back")
    gone.hover()
    gone.get_by_role("button", name="Delete").click()
    expect(message(bob, "ann", "message deleted")).to_have_count(1)
    expect(bob.locator("#messages", has_text="a message to take back")).to_have_count(0)

    bob.reload()
    expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    expect(message(bob, "ann", "the typo, fixed").locator(".edited")).to_have_count(1)
    expect(message(bob, "ann", "message deleted")).to_have_count(1)
    expect(bob.locator("#messages", has_text="teh typo")).to_have_count(0)
