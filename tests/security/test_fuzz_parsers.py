"""Fuzzing the parsers that read what attackers send: the credential parser (Authorization header,
subprotocol entries, the token cookie, the Origin check), the `next` validator and the chat frame decoder.

Thousands of generated inputs each; every one must end in a value or in the parser's own error
(InvalidRequest, BadOrigin, FrameError) — never anything else, which would be a 500 or a dropped socket.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse

from gateway.app import Gateway, build_gateway
from gateway.authenticator import Credentials
from gateway.chat.frames import MAX_CLIENT_ID_CHARS, MAX_TEXT_CHARS, FrameError, Ping, Resume, SendMessage, decode_frame
from gateway.config import load_settings
from gateway.cookies import TokenSession
from gateway.errors import BadOrigin, CredentialError, InvalidRequest
from gateway.redirects import DEFAULT_NEXT, safe_next
from gateway.sealing import Sealer
from gateway.security import (
    CHAT_PROTOCOL,
    K8S_TOKEN_PREFIX,
    check_origin,
    extract_credentials,
    parse_authorization,
    parse_subprotocols,
)
from gateway.tokens import MAX_TOKEN_BYTES, TOKEN68
from tests.conftest import CLIENT_ID, ISSUER, OLD_SECRET, SECRET
from tests.security.strategies import TOKEN_CHARS, authorizations, frames, header_values
from tests.test_redirects import ALLOWED

# 2,000 inputs per parser, and more where a parser is also fed by a wider test: the Authorization and
# subprotocol parsers run again inside the credential parser's test, `next` with and without an allow-list.
PARSER = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALSO_FED_ELSEWHERE = settings(PARSER, max_examples=1000)
PUBLIC = "http://gateway.test"

# --- subprotocol entries -------------------------------------------------------------------------------


def _k8s(raw: bytes, pad: bool) -> str:
    encoded = base64.urlsafe_b64encode(raw).decode()
    return K8S_TOKEN_PREFIX + (encoded if pad else encoded.rstrip("="))


subprotocol_entries = st.one_of(
    st.just(CHAT_PROTOCOL), st.text(max_size=30), header_values,
    st.builds(_k8s, st.binary(max_size=60), st.booleans()),
    st.builds(_k8s, st.text(TOKEN_CHARS, min_size=1, max_size=40).map(str.encode), st.booleans()),
    st.builds(lambda junk: K8S_TOKEN_PREFIX + junk, st.text(max_size=40)),
)
subprotocol_headers = st.one_of(
    st.lists(subprotocol_entries, max_size=5).map(", ".join),
    st.lists(subprotocol_entries, max_size=5).map(",".join),
    header_values,
)

# --- the credential parser ------------------------------------------------------------------------------


@ALSO_FED_ELSEWHERE
@given(authorizations)
@example("Bearer " + "a" * (9 * 1024))
@example("Bearer abc\n")
@example("Bearer \x00")
def test_authorization_header_parser_only_raises_invalid_request(value: str) -> None:
    try:
        token = parse_authorization(value)
    except InvalidRequest as exc:
        assert exc.status == 400 and exc.challenge is not None and 'error="invalid_request"' in exc.challenge
        return
    assert TOKEN68.fullmatch(token) and len(token) <= MAX_TOKEN_BYTES
    assert value.strip().split(" ", 1)[0].lower() == "bearer"
    assert token in value


@ALSO_FED_ELSEWHERE
@given(subprotocol_headers)
@example(K8S_TOKEN_PREFIX)
@example(K8S_TOKEN_PREFIX + "%%%")
@example(K8S_TOKEN_PREFIX + base64.urlsafe_b64encode(b"\xff").decode())
def test_subprotocol_parser_only_raises_invalid_request(value: str) -> None:
    try:
        token = parse_subprotocols(value)
    except InvalidRequest:
        return
    if token is not None:
        assert TOKEN68.fullmatch(token) and len(token) <= MAX_TOKEN_BYTES
        assert K8S_TOKEN_PREFIX in value


@ALSO_FED_ELSEWHERE
@given(header_values)
@example("null")
@example("http://gateway.test\x00")
def test_origin_check_only_raises_bad_origin(value: str) -> None:
    allowed = frozenset({PUBLIC, "https://app.example.com"})
    try:
        check_origin(value, allowed, required=True)
    except BadOrigin as exc:
        assert exc.status == 403
        return
    assert value.lower() in allowed


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The real wiring (cookie names, keys, rotation) without a server: the parser needs nothing else."""
    settings_ = load_settings(
        env_file=None, public_url=PUBLIC, secret_keys=[SECRET, OLD_SECRET],
        providers={"idp": {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": "s3cret"}},
        history_path=str(tmp_path_factory.mktemp("fuzz") / "history.sqlite3"),
    )
    yield build_gateway(settings_, httpx.AsyncClient())


def _connection(kind: str, headers: dict[str, str]) -> HTTPConnection:
    # latin-1 when it can (the bytes Starlette reads back as this text), else the UTF-8 a client would send.
    raw = [(name.encode(), value.encode("latin-1") if _latin1(value) else value.encode()) for name, value in
           headers.items()]
    return HTTPConnection({"type": kind, "headers": raw, "path": "/ws/lobby", "query_string": b""})


def _latin1(value: str) -> bool:
    return all(ord(char) < 256 for char in value)


SEALER = Sealer([SECRET], "token cookie")  # what create_app seals the token cookie with


def _sealed(payload: Any) -> str:
    """A genuine seal around anything: what a bug of ours, or a stolen key, could put in a cookie."""
    return SEALER.seal(payload)


# The fields TokenCookie.read looks at, each anything JSON can hold (flat values mostly: cheaper to draw).
cookie_fields = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
                          st.lists(st.integers(), max_size=2), st.just({}))
cookie_payloads = st.fixed_dictionaries(
    {}, optional={"p": cookie_fields, "t": cookie_fields, "e": cookie_fields, "a": cookie_fields},
)


@PARSER
@given(kind=st.sampled_from(["http", "websocket"]),
       authorization=st.none() | authorizations,
       subprotocols=st.none() | subprotocol_headers,
       cookie=st.none() | header_values | st.builds(lambda v: f"gateway_token={v}", header_values),
       payload=st.none() | cookie_payloads)
def test_credential_parser_only_raises_invalid_request(gateway: Gateway, kind: str, authorization: str | None,
                                                       subprotocols: str | None, cookie: str | None,
                                                       payload: dict[str, Any] | None) -> None:
    headers = {}
    if authorization is not None:
        headers["authorization"] = authorization
    if subprotocols is not None:
        headers["sec-websocket-protocol"] = subprotocols
    if payload is not None:
        cookie = f"gateway_token={_sealed(payload)}; {cookie or ''}"
    if cookie is not None:
        headers["cookie"] = cookie
    try:
        found = extract_credentials(_connection(kind, headers), gateway)
    except CredentialError as exc:
        assert type(exc) is InvalidRequest, exc
        return
    if found is None:
        return
    assert isinstance(found, Credentials)
    assert isinstance(found.token, str) and found.token
    if found.source == "cookie":
        assert isinstance(found.provider, str)
        session = gateway.token_cookie.read(_connection(kind, headers))
        assert isinstance(session, TokenSession)
    else:
        assert found.source in ("header", "subprotocol") and TOKEN68.fullmatch(found.token)


# --- the `next` validator -------------------------------------------------------------------------------

PIECES = ["/", "//", "\\", "/\\", "@", ".", "..", "/./", "/../", "%2f", "%2F", "%5c", "%2e", "%252f", "%25",
          "%09", "%0a", "%00", "\t", "\n", "\r", " ", "\x00", "?", "#", ":", "evil.test", "gateway.test",
          "foo.bar", "http:", "https:", "javascript:", "chat", "room-1", "\u3002", "\uff0f", "\u2215", "%e3%80%82",
          "\ufeff", "\u200b", ";", "&", "=", "~", "\x7f", "\x1b"]
next_values = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.lists(st.sampled_from(PIECES), max_size=12).map(lambda parts: "/" + "".join(parts)),
    st.binary(max_size=40).map(lambda raw: raw.decode("utf-8", errors="surrogateescape")),
)
ALLOWED_HOSTS = [entry.split(":")[0].lstrip("*.") for entry in ALLOWED]


def _browser_destination(location: str) -> str | None:
    """Where a browser goes from http://gateway.test/ when told `location`: it drops tabs and newlines and
    reads `\\` as `/`. Returns the host, or None when the result is not even a URL."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    try:
        return urlsplit(urljoin(PUBLIC + "/", cleaned)).hostname
    except ValueError:
        return None


def _looks_safe(target: str, allowed_hosts: list[str]) -> bool:
    location = RedirectResponse(target).headers["location"]  # as the callback sends it
    if not location.isascii() or any(c in location for c in "\x00\r\n\t "):
        return False  # no header injection, and nothing a browser would read differently
    for hop in (location, unquote(location)):  # also after one more decoding, by a second redirect
        host = _browser_destination(hop)
        if host is None:
            return False
        if host != "gateway.test" and not any(host == h or host.endswith("." + h) for h in allowed_hosts):
            return False
    return True


@PARSER
@given(next_values)
@example("/\t/evil.test")
@example("/.//evil.test")
@example("/%2f%2fevil.test")
@example("/\\evil.test")
def test_next_validator_never_leaves_our_origin(value: str) -> None:
    result = safe_next(value)
    assert result == DEFAULT_NEXT or _looks_safe(result, []), (value, result)
    if result != DEFAULT_NEXT:
        assert result.startswith("/") and not result.startswith("//")


@ALSO_FED_ELSEWHERE
@given(st.one_of(next_values, st.builds(lambda s, h, rest: f"{s}//{h}{rest}",
                                        st.sampled_from(["http:", "https:", "HTTP:", "", "javascript:", "ftp:"]),
                                        st.sampled_from([*ALLOWED_HOSTS, "evil.test", "foo.bar.evil.test",
                                                         "evil.test@foo.bar", "foo.bar@evil.test",
                                                         "foo.bar:8080", "port.bar:8080", "anyport.bar:1"]),
                                        st.lists(st.sampled_from(PIECES), max_size=6).map("".join))))
def test_next_validator_with_an_allow_list_only_leaves_for_allowed_hosts(value: str) -> None:
    result = safe_next(value, ALLOWED)
    assert result == DEFAULT_NEXT or _looks_safe(result, ALLOWED_HOSTS), (value, result)


# --- the frame decoder ----------------------------------------------------------------------------------

def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@PARSER
@given(frames)
@example("[" * 3000)
@example('{"type":"message","text":"\\ud800"}')
@example('{"type":"message","text":"ok","client_id":"\\udc00"}')
@example('{"type":"resume","after":"\\ud800-1"}')
def test_frame_decoder_only_raises_frame_errors(text: str) -> None:
    try:
        frame = decode_frame(text)
    except FrameError as exc:
        assert exc.code in ("bad_frame", "too_big")
        assert exc.close_code in (None, 1007)
        assert _utf8(exc.message)  # it is sent back to the client
        return
    assert isinstance(frame, SendMessage | Resume | Ping)
    # Whatever comes out is stored (SQLite, Redis) and sent to every socket in the room as UTF-8.
    if isinstance(frame, SendMessage):
        assert frame.text.strip() and len(frame.text) <= MAX_TEXT_CHARS and _utf8(frame.text)
        assert frame.client_id is None or (0 < len(frame.client_id) <= MAX_CLIENT_ID_CHARS
                                           and _utf8(frame.client_id))
    if isinstance(frame, Resume):
        assert frame.after and _utf8(frame.after)

