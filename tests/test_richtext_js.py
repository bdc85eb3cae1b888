"""gateway/static/richtext.js under Node: how a message's text splits into text, `code`, *emphasis* and
links, and that nothing hostile becomes a link (the page builds nodes from these tokens with textContent:
tests/e2e/test_finish_browser.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

RICHTEXT_JS = Path(__file__).resolve().parents[1] / "gateway" / "static" / "richtext.js"
RUNNER = """
const vm = require("vm"), fs = require("fs");
const sandbox = { URL };
vm.createContext(sandbox);
vm.runInContext(fs.readFileSync(process.argv[1], "utf8"), sandbox);
const texts = JSON.parse(fs.readFileSync(0, "utf8"));
const split = ([text, me]) => sandbox.GatewayText.tokens(text, me);
process.stdout.write(JSON.stringify(texts.map(split)));
"""


def tokens(*texts: str, me: str = "") -> list[list[dict[str, Any]]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("richtext.js unit checks need Node.js: no `node` on PATH")
    cases = json.dumps([[text, me] for text in texts])
    done = subprocess.run([node, "-e", RUNNER, str(RICHTEXT_JS)], input=cases, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    result: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return result


def test_code_emphasis_and_links() -> None:
    [split] = tokens("*look*: `a <b>` at https://example.com/a_(b). Done")
    assert split == [
        {"kind": "em", "text": "look"}, {"kind": "text", "text": ": "}, {"kind": "code", "text": "a <b>"},
        {"kind": "text", "text": " at "},
        {"kind": "link", "text": "https://example.com/a_(b)", "href": "https://example.com/a_(b)"},
        {"kind": "text", "text": ". Done"},
    ]


@pytest.mark.parametrize("text", [
    "javascript:alert(1)", "<a href=javascript:alert(1)>x</a>", "data:text/html,<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "2*3*4", "** *", "a * b * c", "`unclosed", "vbscript:msgbox",
])
def test_hostile_or_plain_text_stays_one_text_token(text: str) -> None:
    assert tokens(text) == [[{"kind": "text", "text": text}]]


def test_a_link_stops_at_quotes_and_angle_brackets_and_keeps_no_trailing_punctuation() -> None:
    [split] = tokens('go to https://x.test/?q="><script>, or http://y.test!')
    links = [token for token in split if token["kind"] == "link"]
    assert [link["href"] for link in links] == ["https://x.test/?q=", "http://y.test/"]
    assert "".join(token["text"] for token in split) == 'go to https://x.test/?q="><script>, or http://y.test!'


def test_code_is_literal() -> None:
    assert tokens("`*not em* https://x.test`") == [[{"kind": "code", "text": "*not em* https://x.test"}]]


def test_the_readers_own_name_is_marked_where_it_is_mentioned() -> None:
    [split] = tokens("hi @Bob Lee! not @bob, not mail@bob lee, `@Bob Lee`", me="Bob Lee")
    assert [token for token in split if token["kind"] == "mention"] == [{"kind": "mention", "text": "@Bob Lee"}]
    assert tokens("@Bob Lee", me="") == [[{"kind": "text", "text": "@Bob Lee"}]]
    assert tokens("@a.b and @aXb", me="a.b") == [[{"kind": "mention", "text": "@a.b"},
                                                   {"kind": "text", "text": " and @aXb"}]]
