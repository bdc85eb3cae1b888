"""Shared by the session attack tests: a provider that issues refresh tokens for whoever signed in, and a
browser's cookie jar taken apart and sent again the way an attacker arranges it (copied, tossed, doubled)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
from starlette.testclient import TestClient

from tests.conftest import FakeIdP, SignIn

REFRESH_HEADER = "X-Gateway-Refresh"  # what the chat page sends with POST /auth/refresh


def issue_refresh_tokens(idp: FakeIdP) -> dict[str, str]:
    """Every token answer carries a new refresh token; a refresh gives an access token for the same user
    (unlike tests.test_logout's, which always answers for alice). Returns refresh token -> subject."""
    original = idp._token
    issued: dict[str, str] = {}

    def token(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        if form.get("grant_type") == "refresh_token":
            subject = issued.get(form.get("refresh_token", ""))
            if subject is None:
                return httpx.Response(400, json={"error": "invalid_grant"})
            body = {"access_token": idp.issue_token(subject), "token_type": "Bearer", "expires_in": 3600}
        else:
            answer = original(request)
            if answer.status_code != 200:
                return answer
            body = answer.json()
            subject = idp.tokens[body["access_token"]]["sub"]
        refresh = f"r-{secrets.token_urlsafe(12)}"
        issued[refresh] = subject
        return httpx.Response(200, json={**body, "refresh_token": refresh})

    idp.mock.routes["token"].mock(side_effect=token)
    return issued


@dataclass(frozen=True)
class Kept:
    """One cookie of a browser's jar: what a browser sends it with."""

    name: str
    value: str
    path: str


def copy_cookies(client: TestClient) -> list[Kept]:
    return [Kept(c.name, c.value, c.path) for c in client.cookies.jar if c.value is not None]


def browser_cookies(client: TestClient, sign_in: SignIn, sub: str) -> list[Kept]:
    """Sign `sub` in and take the cookies away: the client's jar is empty again for the next browser."""
    assert sign_in(client, sub).status_code == 303
    kept = copy_cookies(client)
    client.cookies.clear()
    return kept


def cookie_header(cookies: list[Kept], path: str) -> str:
    """The Cookie header a browser sends to `path` (Path matching as RFC 6265 §5.1.4, in jar order)."""
    def matches(cookie_path: str) -> bool:
        return path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/")

    return "; ".join(f"{c.name}={c.value}" for c in cookies if matches(c.path))


def named(cookies: list[Kept], name: str) -> Kept:
    return next(c for c in cookies if c.name == name)


def without(cookies: list[Kept], name: str) -> list[Kept]:
    return [c for c in cookies if c.name != name]


def same_origin(origin: str) -> dict[str, str]:
    """The headers the chat page's fetch() sends with POST /auth/refresh."""
    return {"Origin": origin, REFRESH_HEADER: "1"}


def set_cookie_names(response: httpx.Response) -> set[str]:
    """Cookies a response sets to a value (not the ones it deletes)."""
    return {h.split("=", 1)[0] for h in response.headers.get_list("set-cookie") if "Max-Age=0" not in h}
