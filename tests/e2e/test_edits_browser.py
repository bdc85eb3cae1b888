"""Editing and deleting one's own message in a real browser: the other user sees both live, after a reload,
on a second instance (over Redis) and after a reconnect that resumes; nobody gets Edit or Delete on another
user's message."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT
from tests.e2e.test_browser import message, say, sign_in
from tests.processes import wait_until_answers
from tests.test_scale_out import Cluster

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


@pytest.fixture
def cluster(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[Cluster]:
    """The provider and two gateway instances over one Redis (tests/test_scale_out.py's Cluster)."""
    cluster = Cluster(tmp_path, redis_url, redis_prefix)
    cluster.env["GATEWAY_PROVIDERS__DEMO__TITLE"] = "Demo provider"
    try:
        cluster.start_provider()
        cluster.start_gateway("a")
        cluster.start_gateway("b")
        yield cluster
    finally:
        cluster.stop()


def start_again(cluster: Cluster, name: str) -> None:
    """A new process for instance `name`, on its old address."""
    url = cluster.urls[name]
    log = cluster.workdir / f"{name}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--port", url.rsplit(":", 1)[1]],
                                   cwd=cluster.workdir, env=cluster.env | {"GATEWAY_PUBLIC_URL": url},
                                   stdout=sink, stderr=subprocess.STDOUT)
    cluster.processes[name] = process
    wait_until_answers(f"{url}/healthz", process, log)


def test_changes_reach_a_second_instance_and_a_page_that_reconnects(
        cluster: Cluster, contexts: Callable[[], BrowserContext]) -> None:
    ann, bob = sign_in(contexts(), cluster.urls["a"], "ann"), sign_in(contexts(), cluster.urls["b"], "bob")
    say(ann, "first draft")
    say(ann, "second thought")
    expect(message(bob, "ann", "second thought")).to_have_count(1)
    first = message(ann, "ann", "first draft")
    first.hover()
    first.get_by_role("button", name="Edit").click()
    ann.get_by_role("textbox", name="Edit your message").fill("final draft")
    ann.get_by_role("textbox", name="Edit your message").press("Enter")
    expect(message(bob, "ann", "final draft").locator(".edited")).to_have_count(1)  # from instance a to b

    # Bob's instance freezes, so it hears nothing of the delete, and dies frozen: it never tells bob.
    cluster.processes["b"].send_signal(signal.SIGSTOP)
    try:
        ann.once("dialog", lambda dialog: dialog.accept())
        second = message(ann, "ann", "second thought")
        second.hover()
        second.get_by_role("button", name="Delete").click()
        expect(message(ann, "ann", "message deleted")).to_have_count(1)
    finally:
        cluster.kill("b")
    expect(bob.locator("#status")).not_to_have_attribute("data-state", "live")
    expect(message(bob, "ann", "second thought")).to_have_count(1)
    start_again(cluster, "b")
    # bob's page reconnects with ?after=<its newest id>: the delete of a message it holds comes with the resume.
    expect(bob.locator("#status")).to_have_attribute("data-state", "live", timeout=30_000)
    expect(message(bob, "ann", "message deleted")).to_have_count(1)
    expect(bob.locator("#messages", has_text="second thought")).to_have_count(0)
