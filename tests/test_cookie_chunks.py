"""Tokens bigger than one cookie (docs/sessions.md): compressed, split over chunk cookies, reassembled on read;
a missing or tampered chunk is no cookie at all; beyond what a browser can send on the chat socket's
handshake, sign-in fails with a clear 400."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient
from websockets.asyncio.client import connect

from gateway.app import create_app
from gateway.cookies import MAX_COOKIE_BYTES, MAX_TOKEN_COOKIES_BYTES, TokenCookie, TokenSession, TokenTooLarge
from gateway.sealing import Sealer
from tests.conftest import SECRET, FakeIdP, SettingsFactory, SignIn
from tests.live import free_port, live_server

PURPOSE = "token cookie"
T0 = 1_700_000_000.0
WEBSOCKETS_MAX_LINE = 8192  # websockets refuses a longer handshake header line with 431



def big_jwt(idp: FakeIdP, sub: str = "alice", size: int = 6 * 1024) -> str:
    """A real signed access token of at least `size` bytes: a user in many groups, as Entra issues them."""
    groups: list[str] = []
    while True:
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, {
            "iss": idp.issuer, "sub": sub, "aud": idp.client_id, "exp": int(time.time()) + 3600,
            "groups": groups}, idp.key)
        if len(token) >= size:
            return token
        groups.append(str(uuid.uuid4()))


def issue_big_tokens(idp: FakeIdP, make_token: Any = big_jwt) -> list[str]:
    """Make the provider's token endpoint answer with a big access token (that userinfo accepts)."""
    original = idp._token
    issued: list[str] = []

    def token(request: httpx.Request) -> httpx.Response:
        answer = original(request)
        body = answer.json()
        if "access_token" not in body:
            return answer
        claims = idp.tokens.pop(body["access_token"])
        big = make_token(idp, claims["sub"])
        idp.tokens[big] = claims
        issued.append(big)
        return httpx.Response(200, json={**body, "access_token": big})

    idp.mock.routes["token"].mock(side_effect=token)
    return issued


def _cookie(https: bool = False) -> TokenCookie:
    return TokenCookie(Sealer([SECRET], PURPOSE), https=https, max_age=3600)


def _session(token: str) -> TokenSession:
    return TokenSession("idp", token, time.time() + 600, time.time())


def _set_cookies(cookie: TokenCookie, session: TokenSession, conn: Request | None = None) -> list[str]:
    response = Response()
    cookie.set(response, session, conn)
    return [value.decode("latin-1") for key, value in response.raw_headers if key == b"set-cookie"]


def _attributes(header: str) -> tuple[str, str, dict[str, str]]:
    pair, *rest = (part.strip() for part in header.split(";"))
    name, _, value = pair.partition("=")
    attributes = {}
    for part in rest:
        key, _, attr = part.partition("=")
        attributes[key.lower()] = attr
    return name, value, attributes


def _request(cookies: dict[str, str]) -> Request:
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return Request({"type": "http", "headers": [(b"cookie", header.encode("latin-1"))]})


def _jar(cookie: TokenCookie, session: TokenSession) -> dict[str, str]:
    """What the browser holds after the cookies were set."""
    return {name: value for name, value, _ in map(_attributes, _set_cookies(cookie, session))}


# --- TokenCookie on its own --------------------------------------------------------------------------

def test_a_small_token_stays_one_plain_cookie() -> None:
    headers = _set_cookies(_cookie(), _session("small-token"))
    assert len(headers) == 1
    name, value, _ = _attributes(headers[0])
    # A plain Fernet token, no count (quoted: Starlette quotes values holding "=").
    assert name == "gateway_token" and value.strip('"').startswith("gAAAAA")


def test_a_6kib_token_is_split_into_chunks_with_the_same_attributes() -> None:
    token = secrets.token_urlsafe(4608)  # 6 KiB of random text: compression barely helps
    headers = _set_cookies(_cookie(), _session(token))
    assert [_attributes(h)[0] for h in headers] == ["gateway_token", "gateway_token.1"]
    first = _attributes(headers[0])[1]
    assert first.startswith("2:")
    for header in headers:
        name, value, attributes = _attributes(header)
        assert len(name) + len(value) <= MAX_COOKIE_BYTES
        assert token[:40] not in value  # sealed
        assert "httponly" in attributes and attributes["samesite"] == "lax" and attributes["path"] == "/"
        assert "secure" not in attributes and "domain" not in attributes
    assert len({_attributes(h)[2]["max-age"] for h in headers}) == 1


def test_on_https_every_chunk_carries_the_host_prefix() -> None:
    headers = _set_cookies(_cookie(https=True), _session(secrets.token_urlsafe(4608)))
    assert [_attributes(h)[0] for h in headers] == ["__Host-gateway_token", "__Host-gateway_token.1"]
    for header in headers:
        _, _, attributes = _attributes(header)
        # What browsers demand of __Host- cookies: Secure, Path=/, no Domain.
        assert "secure" in attributes and attributes["path"] == "/" and "domain" not in attributes


def test_chunks_are_reassembled_on_read() -> None:
    cookie, token = _cookie(), secrets.token_urlsafe(4608)
    session = cookie.read(_request(_jar(cookie, _session(token))))
    assert session is not None and session.access_token == token and session.provider == "idp"


def test_the_cookie_header_of_a_6kib_jwt_fits_the_socket_handshake(idp: FakeIdP) -> None:
    for https in (False, True):
        cookie = _cookie(https)
        jar = _jar(cookie, _session(big_jwt(idp)))
        line = "Cookie: " + "; ".join(f"{name}={value}" for name, value in jar.items()) + "\r\n"
        assert len(jar) == 2
        assert len(line) < WEBSOCKETS_MAX_LINE - 1024  # room for a few other cookies


def test_a_missing_chunk_reads_as_no_cookie() -> None:
    cookie = _cookie()
    jar = _jar(cookie, _session(secrets.token_urlsafe(4608)))
    del jar["gateway_token.1"]
    assert cookie.read(_request(jar)) is None
    jar["gateway_token.1"] = ""
    assert cookie.read(_request(jar)) is None


def test_a_tampered_chunk_reads_as_no_cookie() -> None:
    cookie = _cookie()
    jar = _jar(cookie, _session(secrets.token_urlsafe(4608)))
    chunk = jar["gateway_token.1"]
    middle = len(chunk) // 2
    jar["gateway_token.1"] = chunk[:middle] + ("A" if chunk[middle] != "A" else "B") + chunk[middle + 1:]
    assert cookie.read(_request(jar)) is None


def test_chunks_of_two_sessions_do_not_mix() -> None:
    cookie = _cookie()
    mine = _jar(cookie, _session(secrets.token_urlsafe(4608)))
    theirs = _jar(cookie, _session(secrets.token_urlsafe(4608)))
    assert cookie.read(_request({**mine, "gateway_token.1": theirs["gateway_token.1"]})) is None


@pytest.mark.parametrize("count", ["1", "3", "99", "x", "-2", "²", ""])
def test_a_forged_chunk_count_reads_as_no_cookie(count: str) -> None:
    cookie = _cookie()
    jar = _jar(cookie, _session(secrets.token_urlsafe(4608)))
    head = jar["gateway_token"].partition(":")[2]
    jar["gateway_token"] = f"{count}:{head}"
    assert cookie.read(_request(jar)) is None


def test_clear_removes_every_chunk() -> None:
    response = Response()
    _cookie(https=True).clear(response)
    cleared = [_attributes(v.decode("latin-1")) for k, v in response.raw_headers if k == b"set-cookie"]
    assert [name for name, _, _ in cleared] == ["__Host-gateway_token", "__Host-gateway_token.1"]
    for _, value, attributes in cleared:
        assert value == '""' and attributes["max-age"] == "0" and attributes["path"] == "/"


def test_a_smaller_token_expires_the_chunk_a_bigger_one_left() -> None:
    cookie = _cookie()
    before = _request(_jar(cookie, _session(secrets.token_urlsafe(4608))))
    headers = [_attributes(h) for h in _set_cookies(cookie, _session("small-again"), before)]
    assert [(name, attributes.get("max-age")) for name, _, attributes in headers][1:] == [("gateway_token.1", "0")]
    # Without the request (nothing to compare with), a small token sets just its one cookie.
    assert len(_set_cookies(cookie, _session("small-again"))) == 1


def test_a_token_too_large_for_the_chunks_is_refused_clearly() -> None:
    with pytest.raises(TokenTooLarge) as refused:
        _cookie().seal(_session(secrets.token_urlsafe(7000)))
    assert refused.value.size > MAX_TOKEN_COOKIES_BYTES
    assert f"at most {MAX_TOKEN_COOKIES_BYTES}" in str(refused.value)
    assert refused.value.code == "token_too_large"


def test_compressed_seals_open_and_are_bounded() -> None:
    sealer = Sealer([SECRET], PURPOSE)
    assert sealer.open(sealer.seal({"t": "x" * 5000}, compress=True), max_age=60) == {"t": "x" * 5000}
    # Only we can seal, but an inflated payload is bounded all the same.
    assert sealer.open(sealer.seal({"t": "x" * 100_000}, compress=True), max_age=60) is None


# --- through the app ---------------------------------------------------------------------------------

def test_a_6kib_jwt_round_trips_through_the_callback(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    issued = issue_big_tokens(idp)
    answer = sign_in(client, next="/chat")
    assert answer.status_code == 303 and answer.headers["location"] == "/chat"
    names = [h.split("=", 1)[0] for h in answer.headers.get_list("set-cookie")]
    assert "gateway_token" in names and "gateway_token.1" in names
    assert len(issued[0]) >= 6 * 1024
    page = client.get("/chat")
    assert page.status_code == 200 and "Alice" in page.text
    # The provider was asked about the whole token, reassembled.
    assert idp.mock.routes["userinfo"].calls.last.request.headers["authorization"] == f"Bearer {issued[0]}"
    assert client.get("/auth/session").json()["authenticated"] is True


def test_a_tampered_chunk_signs_the_browser_out(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    issue_big_tokens(idp)
    sign_in(client)
    assert client.get("/chat").status_code == 200
    chunk = client.cookies["gateway_token.1"]
    middle = len(chunk) // 2
    client.cookies.delete("gateway_token.1")  # replaced, as a browser holds one cookie of a name
    client.cookies.set("gateway_token.1", chunk[:middle] + ("A" if chunk[middle] != "A" else "B") + chunk[middle + 1:])
    answer = client.get("/chat")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert client.get("/auth/session").json()["authenticated"] is False


def test_a_lost_chunk_signs_the_browser_out(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    issue_big_tokens(idp)
    sign_in(client)
    client.cookies.delete("gateway_token.1")
    assert client.get("/chat").status_code == 303


def test_logout_clears_every_chunk(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    issue_big_tokens(idp)
    sign_in(client)
    page = client.get("/chat").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    answer = client.post("/logout", data={"csrf": csrf})
    cleared = {h.split("=", 1)[0] for h in answer.headers.get_list("set-cookie") if 'Max-Age=0' in h}
    assert {"gateway_token", "gateway_token.1"} <= cleared
    assert "gateway_token" not in client.cookies and "gateway_token.1" not in client.cookies
    assert client.get("/chat").status_code == 303


def test_a_token_too_large_for_any_cookie_fails_sign_in_with_a_clear_400(client: TestClient, sign_in: SignIn,
                                                                        idp: FakeIdP) -> None:
    issue_big_tokens(idp, lambda idp, sub: secrets.token_urlsafe(7500))
    answer = sign_in(client)
    assert answer.status_code == 400
    assert "too large" in answer.text and 'href="/login"' in answer.text
    assert not any(h.startswith("gateway_token") for h in answer.headers.get_list("set-cookie"))


@pytest.fixture
def live_address(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[str]:
    port = free_port()
    with live_server(create_app(make_settings(public_url=f"http://127.0.0.1:{port}")), port) as address:
        yield address


@pytest.mark.anyio
async def test_a_6kib_jwt_works_on_the_websocket(live_address: str, idp: FakeIdP) -> None:
    issued = issue_big_tokens(idp)
    async with httpx.AsyncClient(base_url=f"http://{live_address}", follow_redirects=False) as browser:
        start = await browser.get("/login/idp")
        assert (await browser.get(idp.authorize(start.headers["location"], "gus"))).status_code == 303
        assert (await browser.get("/chat")).status_code == 200
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies.jar if c.path == "/")
    assert "gateway_token.1=" in cookie and len(issued[0]) >= 6 * 1024
    async with connect(f"ws://{live_address}/ws/lobby", additional_headers={"Cookie": cookie},
                       origin=f"http://{live_address}") as ws:  # type: ignore[arg-type]
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome" and welcome["user"]["name"] == "Gus"
