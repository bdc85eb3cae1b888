"""Look-alike input: `$` also matches before a final newline, so `re.match(r"^[a-z]+$", "staff\\n")` passes
and `/ws/staff%0A` was a room that `#staff`'s rule did not cover. Every validator is swept with a control
character after, before and inside a value it accepts; the rooms are also tried against the router of a
real uvicorn (which decodes `%0A` before routing)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

import gateway
from gateway.access import _LIST_SEPARATORS, ROOM_NAME
from gateway.chat.history import parse_id
from gateway.config import HOSTNAME, PROVIDER_NAME
from gateway.cookie_guard import PATH_SEGMENT
from gateway.errors import ConfigError, InvalidRequest
from gateway.logout import HOST_PORT
from gateway.logs import _INCOMING_ID, _JSON_UNSAFE, _UNSAFE
from gateway.path_guard import CONTROL as CONTROL_CHARACTERS
from gateway.redirects import _DOT_SEGMENT, DEFAULT_NEXT, safe_next
from gateway.tokens import _LONE_SURROGATE, TOKEN68, check_token_syntax, retry_after
from tests.conftest import FakeIdP, SettingsFactory
from tests.security.conftest import StartGateway, handshake

CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\u2028"]
PATTERNS = {
    "gateway.access.ROOM_NAME": (ROOM_NAME, "staff"),
    "gateway.tokens.TOKEN68": (TOKEN68, "abc.DEF-123~+/=="),
    "gateway.config.PROVIDER_NAME": (PROVIDER_NAME, "my-idp"),
    "gateway.config.HOSTNAME": (HOSTNAME, "chat.example.com"),
    "gateway.logout.HOST_PORT": (HOST_PORT, "idp.example.com:8443"),
    "gateway.logs._INCOMING_ID": (_INCOMING_ID, "req-0123.abc_DEF"),
}


def tainted(value: str) -> list[str]:
    """`value` with each control character after it, before it and inside it."""
    middle = len(value) // 2
    return [variant for char in CONTROL
            for variant in (value + char, char + value, value[:middle] + char + value[middle:])]


def module_patterns() -> dict[int, tuple[str, re.Pattern[str]]]:
    """Every compiled pattern at module level in the package, once (modules import each other's)."""
    found: dict[int, tuple[str, re.Pattern[str]]] = {}
    for info in pkgutil.walk_packages(gateway.__path__, "gateway."):
        for name, value in vars(importlib.import_module(info.name)).items():
            if isinstance(value, re.Pattern):
                found.setdefault(id(value), (f"{info.name}.{name}", value))
    return found


def test_every_validating_pattern_is_anchored_at_both_ends() -> None:
    # Future patterns too: anchored with \A...\Z, not even `.match()` or `.search()` can be fooled.
    # Patterns that find something inside a value (to refuse, split or escape it) validate nothing.
    searches = {id(_LIST_SEPARATORS), id(_DOT_SEGMENT), id(_UNSAFE), id(_JSON_UNSAFE), id(_LONE_SURROGATE),
                id(PATH_SEGMENT), id(CONTROL_CHARACTERS)}
    validators = {key: found for key, found in module_patterns().items() if key not in searches}
    assert {id(pattern) for pattern, _ in PATTERNS.values()} <= set(validators), "a validator moved: update PATTERNS"
    unanchored = [name for name, pattern in validators.values()
                  if not (pattern.pattern.startswith(r"\A") and pattern.pattern.endswith(r"\Z"))]
    assert unanchored == [], f"anchor these with \\A...\\Z (or add them to `searches`): {unanchored}"


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_validating_patterns_refuse_control_characters(name: str) -> None:
    pattern, good = PATTERNS[name]
    assert pattern.fullmatch(good) and pattern.match(good)
    for bad in tainted(good):
        assert pattern.fullmatch(bad) is None, repr(bad)
        assert pattern.match(bad) is None, repr(bad)  # whatever method a caller picks
        assert pattern.search(bad) is None, repr(bad)


def refused(check: Callable[[str], Any], value: str, errors: tuple[type[Exception], ...]) -> bool:
    try:
        check(value)
    except errors:
        return True
    return False


def test_functions_that_validate_refuse_control_characters() -> None:
    for bad in tainted("abc.DEF-123"):
        assert refused(check_token_syntax, bad, (InvalidRequest,)), repr(bad)
    for bad in tainted("1700000000000-12"):
        assert refused(parse_id, bad, (ValueError,)), repr(bad)
    for bad in tainted("/chat/staff"):
        assert safe_next(bad) == DEFAULT_NEXT, repr(bad)
    for bad in tainted("https://app.example.com/x"):
        assert safe_next(bad, [".example.com"]) == DEFAULT_NEXT, repr(bad)


@pytest.mark.parametrize("digits", ["²", "٣", "१२"])  # str.isdigit() says yes; int() says no
def test_retry_after_reads_ascii_digits_only(digits: str) -> None:
    assert retry_after(httpx.Response(429, headers=[(b"Retry-After", digits.encode())]), default=7) == 7


def test_settings_refuse_control_characters(make_settings: SettingsFactory) -> None:
    idp = {"issuer": "https://idp.test", "client_id": "c", "client_secret": "s"}
    for bad in tainted("staff"):
        with pytest.raises(ConfigError, match="GATEWAY_ROOMS"):
            make_settings(rooms={bad: {"allowed_groups": ["staff"]}})
    for bad in tainted("my-idp"):
        with pytest.raises(ConfigError, match="GATEWAY_PROVIDERS"):
            make_settings(providers={bad: idp})
    for bad in tainted("example.com"):
        # Spaces around the value are trimmed by design; whatever is kept must be clean.
        try:
            settings = make_settings(public_url="https://chat.example.com", cookie_domain=bad)
        except ConfigError:
            continue
        assert settings.cookie_domain == "example.com", repr(bad)


# --- the look-alike room through the router ------------------------------------------------------------

ROOM_VARIANTS = ["staff%0A", "staff%0D", "staff%09", "staff%00", "staff%1B", "staff%E2%80%A8", "%0Astaff"]
STAFF_ONLY = {"staff": {"allowed_groups": ["staff"]}}


@pytest.mark.anyio
@pytest.mark.parametrize("room", ROOM_VARIANTS)
async def test_a_look_alike_room_is_400_on_a_real_server(start_gateway: StartGateway, idp: FakeIdP, room: str) -> None:
    with start_gateway(rooms=STAFF_ONLY) as live:
        bearer = {"additional_headers": {"Authorization": f"Bearer {idp.issue_token('mallory')}"}}
        assert (await handshake(live.ws("staff"), **bearer)).status_code == 403  # the rule holds
        answer = await handshake(live.ws(room), **bearer)
        assert answer.status_code == 400, f"/ws/{room} answered {answer.status_code}"
        # A control character anywhere in a path is refused before routing (gateway/path_guard.py); any
        # other look-alike by the room name's own rule.
        expected = b"control character" if "%E2" not in room else b"room names are 1-64 letters"
        assert expected in answer.content
        async with httpx.AsyncClient(base_url=live.origin, headers=bearer["additional_headers"]) as browser:
            page = await browser.get(f"/chat/{room}")
        assert page.status_code == 400, f"/chat/{room} answered {page.status_code}"


@pytest.mark.parametrize("room", ROOM_VARIANTS)
def test_a_look_alike_room_is_400_on_the_page(idp: FakeIdP, make_settings: SettingsFactory, room: str) -> None:
    from gateway.app import create_app

    token = idp.issue_token("mallory")
    with TestClient(create_app(make_settings(rooms=STAFF_ONLY)), follow_redirects=False) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/chat/staff", headers=headers).status_code == 403
        page = client.get(f"/chat/{room}", headers=headers)
        assert page.status_code == 400, f"/chat/{room} answered {page.status_code}"
        assert "#staff" not in page.text
        # The page's probe judges no room by a look-alike name: the answer is the gateway's, not #staff's.
        session = client.get("/auth/session", params={"room": "staff\n"}, headers=headers).json()
        assert session["allowed"] is True and session["reason"] is None
