"""Log injection: `%0a` in a path, a WebSocket path or the callback's `error=` wrote a forged line into the
text log, and raw ANSI escapes passed through to whoever reads it in a terminal. The text format escapes
control characters itself, so every logger (ours, uvicorn's, libraries') is covered; the JSON format stays
one object per line whatever a line splitter counts as a line end."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.logs import JsonFormatter, TextFormatter
from tests.conftest import Logs
from tests.security.conftest import Live

# What an attacker would like a reader (or a log shipper) to see as a line of its own.
FORGED = "FORGED 2026-12-01 00:00:00,000 INFO    gateway.auth [-]: signed in at idp as admin"
RECORD_START = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
# Line ends for one reader or another, ANSI's ESC and CSI, NUL, DEL, and a right-to-left override.
RAW = ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\x1b", "\x9b", "\x00", "\x7f", "\u202e"]


def record(message: str, *args: object, name: str = "uvicorn.error",
           exc_info: Any = None) -> logging.LogRecord:
    entry = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, exc_info)
    entry.request_id = "-"
    return entry


def assert_one_clean_line(text: str) -> None:
    assert len(text.splitlines()) == 1, text  # str.splitlines() splits at \x85, \u2028 and the like too
    for char in RAW:
        assert char not in text, f"raw {char!r} in {text!r}"


def text_formatter() -> TextFormatter:
    return TextFormatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s")


@pytest.mark.parametrize("char", RAW)
def test_the_text_format_escapes_control_characters(char: str) -> None:
    line = text_formatter().format(record('%s - "WebSocket %s" 400', "127.0.0.1", f"/ws/x{char}{FORGED}"))
    assert_one_clean_line(line)
    assert RECORD_START.match(line)
    assert FORGED in line  # still there to read, escaped


def test_ansi_escapes_are_shown_not_run() -> None:
    line = text_formatter().format(record("refused sign-in: %s", "\x1b[2J\x1b[31mred\x1b]0;title\x07"))
    assert line.endswith(r"refused sign-in: \x1b[2J\x1b[31mred\x1b]0;title\x07")


def test_a_traceback_cannot_forge_a_record() -> None:
    try:
        raise ValueError(f"bad value\n{FORGED}\x1b[31m")
    except ValueError:
        entry = record("callback failed", exc_info=sys.exc_info())
    lines = text_formatter().format(entry).split("\n")
    assert RECORD_START.match(lines[0])
    assert len(lines) > 2
    for line in lines[1:]:
        assert line.startswith("    "), line  # continuation lines never start at the margin
        assert "\x1b" not in line
    # The message's own newline stays a line break (a traceback is lines), indented like the rest.
    assert f"{' ' * 4}{FORGED}\\x1b[31m" in lines


def test_a_record_formatted_elsewhere_first_is_still_escaped() -> None:
    # logging caches a record's traceback text (exc_text) for the next handler: pytest's, say.
    try:
        raise ValueError(f"x\n{FORGED}")
    except ValueError:
        entry = record("failed", exc_info=sys.exc_info())
    logging.Formatter().format(entry)
    assert entry.exc_text and f"\n{FORGED}" in entry.exc_text
    lines = text_formatter().format(entry).split("\n")
    assert not any(line.startswith("FORGED") for line in lines)


@pytest.mark.parametrize("char", RAW)
def test_the_json_format_keeps_one_object_per_line(char: str) -> None:
    message = f"/ws/x{char}{FORGED}"
    line = JsonFormatter().format(record("%s", message))
    assert_one_clean_line(line)
    assert json.loads(line)["message"] == message  # exact, nothing lost


def test_paths_and_the_callbacks_error_reach_the_text_log_escaped(logs: Logs, client: TestClient) -> None:
    buffer = logs("text")
    client.get(f"/chat%0A{FORGED}")
    client.get(f"/no-such-page%1B[31m%0D%0A{FORGED}")
    client.get("/auth/idp/callback", params={"error": f"access_denied\n{FORGED}\x1b[2J"})
    text = buffer.getvalue()
    lines = text.splitlines()
    assert lines and all(RECORD_START.match(line) for line in lines), text
    assert "\x1b" not in text and "\r" not in text
    assert sum("\\nFORGED" in line for line in lines) == 3  # two access lines, the refused sign-in


@pytest.mark.anyio
async def test_a_websocket_path_reaches_a_real_servers_log_escaped(logs: Logs, live: Live) -> None:
    buffer = logs("text")
    for path in (f"/ws/lobby{quote(chr(10) + FORGED)}", f"/ws/{quote(chr(27) + '[31m' + chr(10) + FORGED)}"):
        with pytest.raises(InvalidStatus):
            async with connect(f"ws://{live.address}{path}", open_timeout=5):
                pass
    async with httpx.AsyncClient(base_url=f"http://{live.address}") as browser:
        await browser.get(f"/x%0A{FORGED}")
    lines = buffer.getvalue().splitlines()
    assert lines and all(RECORD_START.match(line) for line in lines), buffer.getvalue()
    assert "\x1b" not in buffer.getvalue()
    assert sum(f"\\n{FORGED}" in line for line in lines) == 3  # the access log's lines
