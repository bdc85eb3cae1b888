"""Attacks on what forward-auth tells the apps behind a proxy (GET /auth/check): an email the provider says
is not verified must not reach them as the user's email, a group name holding the list separator must not
read as two groups, and no two different values may give the same header value."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.testclient import TestClient

from tests.conftest import FakeIdP

IDENTITY_HEADERS = ("x-auth-request-user", "x-auth-request-preferred-username", "x-auth-request-subject",
                    "x-auth-request-email", "x-auth-request-groups")


def check(client: TestClient, idp: FakeIdP, sub: str = "mallory", **claims: Any) -> httpx.Response:
    answer = client.get("/auth/check", headers={"Authorization": f"Bearer {idp.issue_token(sub, **claims)}"})
    assert answer.status_code == 202, answer.text
    return answer


def groups_of(answer: httpx.Response) -> list[str]:
    """What a proxy reading the documented format gets: split at ',', then percent-decode each."""
    value = answer.headers["x-auth-request-groups"]
    return [unquote(item, errors="strict") for item in value.split(",")] if value else []


# --- unverified emails ----------------------------------------------------------------------------------

@pytest.mark.parametrize("verified", [False, "false", "FALSE"])
def test_an_unverified_email_never_reaches_the_app(client: TestClient, idp: FakeIdP, verified: Any) -> None:
    answer = check(client, idp, email="ceo@company.example", email_verified=verified)
    assert answer.headers["x-auth-request-email"] == ""
    for name, value in answer.headers.items():
        assert "ceo@company.example" not in unquote(value), f"{name}: {value}"


def test_an_unverified_email_is_no_name_either(client: TestClient, idp: FakeIdP) -> None:
    # No name claims: the display name would fall back on the email, which the provider says is unverified.
    answer = check(client, idp, sub="m-123", name=None, email="ceo@company.example", email_verified=False)
    assert answer.headers["x-auth-request-user"] == "m-123"
    assert answer.headers["x-auth-request-preferred-username"] == "m-123"


@pytest.mark.parametrize("claims", [{"email_verified": True}, {"email_verified": "true"}, {}])
def test_a_verified_email_still_does(client: TestClient, idp: FakeIdP, claims: dict[str, Any]) -> None:
    # No email_verified claim at all: as the allow-lists judge it (gateway/access.py verified_email).
    answer = check(client, idp, sub="alice", **claims)
    assert answer.headers["x-auth-request-email"] == "alice@example.com"


def test_an_unverified_email_signed_in_by_cookie_is_not_sent_either(client: TestClient, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    callback = idp.authorize(start.headers["location"], "mallory", email="ceo@company.example",
                             email_verified=False)
    assert client.get(callback).status_code == 303
    answer = client.get("/auth/check")
    assert answer.status_code == 202
    assert answer.headers["x-auth-request-email"] == ""


# --- the groups list and the encoding -------------------------------------------------------------------

def test_a_group_name_holding_the_separator_is_one_group(client: TestClient, idp: FakeIdP) -> None:
    answer = check(client, idp, groups=["staff,admins", "dev"])
    raw = answer.headers["x-auth-request-groups"].split(",")
    assert "admins" not in raw and "staff" not in raw  # a naive proxy sees neither
    assert sorted(groups_of(answer)) == ["dev", "staff,admins"]  # a careful one sees exactly what was sent


def test_an_encoded_look_alike_gives_another_header_value(client: TestClient, idp: FakeIdP) -> None:
    plain = check(client, idp, sub="u1", name="José", groups=["José"])
    spoof = check(client, idp, sub="u2", name="Jos%C3%A9", groups=["Jos%C3%A9"])
    for header in ("x-auth-request-user", "x-auth-request-groups"):
        assert plain.headers[header] != spoof.headers[header], header
    assert unquote(spoof.headers["x-auth-request-user"]) == "Jos%C3%A9"
    assert groups_of(spoof) == ["Jos%C3%A9"]


TRICKY = ["Alice Smith", "a+tag@example.com", "100% sure", "%25", "%", "x,y", " lead", "trail ", "  ", "José", "李",
          "tab\there", "cr\rlf\n", "nul\x00", "esc\x1b[31m", "del\x7f", "line\u2028sep", '"quoted"', "back\\slash"]


@pytest.mark.parametrize("value", TRICKY)
def test_every_header_decodes_to_exactly_what_the_provider_sent(client: TestClient, idp: FakeIdP,
                                                                value: str) -> None:
    answer = check(client, idp, sub=f"s{value}", name=value, preferred_username=value, email=value,
                   groups=[value, "plain"])
    headers = answer.headers
    for name in IDENTITY_HEADERS:
        assert headers[name].isascii() and headers[name].isprintable(), (name, headers[name])
        assert headers[name] == headers[name].strip(), (name, headers[name])  # HTTP would trim it
    # display_name trims a name; the rest goes as sent.
    assert unquote(headers["x-auth-request-user"], errors="strict") == (value.strip() or f"s{value}".strip())
    assert unquote(headers["x-auth-request-preferred-username"], errors="strict") == value
    assert unquote(headers["x-auth-request-subject"], errors="strict") == f"idp:s{value}"
    assert unquote(headers["x-auth-request-email"], errors="strict") == value
    assert sorted(groups_of(answer)) == sorted([value, "plain"])


def _surrogate_userinfo(idp: FakeIdP, in_sub: bool) -> None:
    # Valid JSON ("\ud800" escapes) but no text: UTF-8 cannot encode it, and headers and frames are bytes.
    def userinfo(request: httpx.Request) -> httpx.Response:
        bad = {"a": "\ud800", "b": "\udfff"}[request.headers["authorization"][-1]]
        claims = {"sub": f"s{bad}" if in_sub else "s1", "name": f"Eve{bad}", "email": f"e{bad}@example.com",
                  "groups": [f"g{bad}", "plain"]}
        return httpx.Response(200, content=json.dumps(claims).encode(), headers={"Content-Type": "application/json"})

    idp.mock.routes["userinfo"].side_effect = userinfo


def test_a_lone_surrogate_in_a_name_email_or_group_is_no_500(client: TestClient, idp: FakeIdP) -> None:
    _surrogate_userinfo(idp, in_sub=False)
    answer = client.get("/auth/check", headers={"Authorization": "Bearer token-a"})
    assert answer.status_code == 202
    for name in IDENTITY_HEADERS:
        assert answer.headers[name].isascii() and answer.headers[name].isprintable(), name
    assert answer.headers["x-auth-request-user"] == "Eve%EF%BF%BD"  # U+FFFD in the name, as in the chat
    assert answer.headers["x-auth-request-email"] == ""  # no text, so no address: left out
    assert answer.headers["x-auth-request-groups"] == "plain"  # the group that is no text is left out
    session = client.get("/auth/session", headers={"Authorization": "Bearer token-b"})
    assert session.status_code == 200 and session.json()["user"]["email"] is None


def test_a_user_id_that_is_no_text_is_refused_everywhere_never_500(client: TestClient, idp: FakeIdP) -> None:
    """Two users whose ids differ only in a lone surrogate could not be told apart by anything sent on:
    refused (403) at forward-auth, at /auth/session and at the socket's handshake."""
    _surrogate_userinfo(idp, in_sub=True)
    answers = [client.get("/auth/check", headers={"Authorization": f"Bearer token-{kind}"}) for kind in "ab"]
    assert [answer.status_code for answer in answers] == [403, 403]
    session = client.get("/auth/session", headers={"Authorization": "Bearer token-a"})
    assert session.status_code == 200
    assert session.json()["authenticated"] is True and session.json()["allowed"] is False
    assert "not valid text" in session.json()["reason_text"]
    from starlette.websockets import WebSocketDisconnect
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(
            "/ws/lobby", headers={"Authorization": "Bearer token-b"}, subprotocols=["gateway.chat.v1"]):
        pass
