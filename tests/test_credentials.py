"""Credentials on a request (docs/sessions.md): header, subprotocol and Origin parsing, then the whole matrix
over HTTP through the real `CurrentUser` dependency."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from gateway.errors import BadOrigin, InvalidRequest
from gateway.security import (
    CHAT_PROTOCOL,
    K8S_TOKEN_PREFIX,
    CurrentUser,
    check_origin,
    parse_authorization,
    parse_subprotocols,
)
from tests.conftest import PUBLIC_URL, FakeIdP, SignIn

ALLOWED_ORIGINS = frozenset({"http://gateway.test", "https://app.example.com"})


# parse_authorization

@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER abc", "abc"), ("Bearer abc==", "abc=="),
     ("Bearer a-b.c_d~e+f/g", "a-b.c_d~e+f/g"), ("Bearer " + "a" * 8192, "a" * 8192)],
)
def test_bearer_header_is_accepted(header: str, token: str) -> None:
    assert parse_authorization(header) == token


@pytest.mark.parametrize(
    "header",
    ["", " ", "Bearer", "Bearer ", "Bearer a b", "Basic xyz", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Token abc",
     "abc", "Bearer tökén", "Bearer abc\u00a0def", "Bëarer abc", "\u00ff\u00fe junk", "Bearer\tabc",
     "Bearer abc,def", "Bearer =abc", "Bearer " + "a" * 9 * 1024, "Bearer abc\ndef"],
)
def test_malformed_header_is_invalid_request(header: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_authorization(header)
    assert caught.value.status == 400
    assert caught.value.challenge is not None and 'error="invalid_request"' in caught.value.challenge


# parse_subprotocols

def _k8s_entry(token: bytes) -> str:
    return K8S_TOKEN_PREFIX + base64.urlsafe_b64encode(token).decode().rstrip("=")


@pytest.mark.parametrize("token", [b"abc", b"a-b.c_d~e+f/g", b"xyz==", b"~" * 40])
def test_subprotocol_token_next_to_the_chat_protocol(token: bytes) -> None:
    assert parse_subprotocols(f"{CHAT_PROTOCOL}, {_k8s_entry(token)}") == token.decode()
    assert parse_subprotocols(f"{_k8s_entry(token)},{CHAT_PROTOCOL}") == token.decode()


def test_subprotocol_token_with_padding_is_accepted() -> None:
    assert parse_subprotocols(K8S_TOKEN_PREFIX + base64.urlsafe_b64encode(b"a").decode()) == "a"


@pytest.mark.parametrize("value", ["", CHAT_PROTOCOL, f"{CHAT_PROTOCOL}, chat.v2", "base64url.bearer"])
def test_no_subprotocol_token(value: str) -> None:
    assert parse_subprotocols(value) is None


@pytest.mark.parametrize(
    "encoded",
    ["", "a", "YWJj!!", "Y*W|J^j", "YW Jj", "YWJj%3D", "é", "Y=Jj", base64.urlsafe_b64encode(b"\xff\xfe").decode(),
     base64.urlsafe_b64encode("tökén".encode()).decode(), base64.urlsafe_b64encode(b"a b").decode(),
     base64.urlsafe_b64encode(b"a" * 9000).decode(), base64.urlsafe_b64encode(b"?" * 40).decode(),
     base64.urlsafe_b64encode(b"abc\n").decode()],
)
def test_bad_subprotocol_token_is_invalid_request(encoded: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_subprotocols(f"{CHAT_PROTOCOL}, {K8S_TOKEN_PREFIX}{encoded}")


# check_origin

@pytest.mark.parametrize("origin", ["http://gateway.test", "HTTP://Gateway.Test", "https://app.example.com"])
def test_exact_origin_passes(origin: str) -> None:
    check_origin(origin, ALLOWED_ORIGINS, required=True)
    check_origin(origin, ALLOWED_ORIGINS, required=False)


@pytest.mark.parametrize(
    "origin",
    ["http://gateway.test.evil.net", "http://evil.gateway.test", "http://gateway.testevil", "http://gateway.test:81",
     "http://gateway.test:80", "https://gateway.test", "ws://gateway.test", "http://gateway.test/",
     "http://gateway.test.", "http://user@gateway.test", "null", "", "gateway.test", "http://app.example.com",
     "https://app.example.com:443"],
)
def test_other_origins_fail(origin: str) -> None:
    for required in (True, False):
        with pytest.raises(BadOrigin):
            check_origin(origin, ALLOWED_ORIGINS, required=required)


def test_missing_origin_only_fails_when_required() -> None:
    with pytest.raises(BadOrigin) as caught:
        check_origin(None, ALLOWED_ORIGINS, required=True)
    assert caught.value.status == 403
    check_origin(None, ALLOWED_ORIGINS, required=False)


# The credentials matrix (docs/sessions.md, "Credentials") over HTTP, through a route that depends on CurrentUser.

@pytest.fixture
def me_client(idp: FakeIdP, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return user.public()

    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


def _userinfo_calls(idp: FakeIdP) -> int:
    return idp.mock.routes["userinfo"].call_count


def test_valid_header_is_200(me_client: TestClient, idp: FakeIdP) -> None:
    response = me_client.get("/me", headers={"Authorization": f"Bearer {idp.issue_token('bob')}"})
    assert response.status_code == 200
    assert response.json() == {"id": "idp:bob", "name": "Bob"}


def test_lowercase_scheme_is_200(me_client: TestClient, idp: FakeIdP) -> None:
    response = me_client.get("/me", headers={"Authorization": f"bearer {idp.issue_token('bob')}"})
    assert response.status_code == 200


MALFORMED_HEADERS: list[str | bytes] = [
    "", "Bearer", "Bearer ", "Bearer a b", "Basic xyz", "Token abc", "abc", "Bearer =abc",
    "Bearer tökén".encode(), "Bearer \xff\xfe".encode("latin-1"), b"\xc3\xa9\xc3\xa9 junk",
    "Bearer " + "a" * 9 * 1024,
]


@pytest.mark.parametrize("header", MALFORMED_HEADERS)
def test_malformed_header_is_400_and_the_cookie_is_not_tried(me_client: TestClient, sign_in: SignIn,
                                                             idp: FakeIdP, header: str | bytes) -> None:
    sign_in(me_client, sub="bob")
    assert me_client.get("/me").status_code == 200  # the cookie alone is good
    calls = _userinfo_calls(idp)
    response = me_client.get("/me", headers={"Authorization": header})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert _userinfo_calls(idp) == calls  # neither the header nor the cookie reached the provider


def test_no_credentials_is_401_with_realm(me_client: TestClient, idp: FakeIdP) -> None:
    response = me_client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert _userinfo_calls(idp) == 0


def test_unknown_token_is_401_invalid_token(me_client: TestClient) -> None:
    response = me_client.get("/me", headers={"Authorization": "Bearer not-a-token-the-provider-knows"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "not-a-token-the-provider-knows" not in response.text


@pytest.mark.parametrize(
    ("failure", "retry_after"),
    [
        (httpx.Response(500), "5"),
        (httpx.Response(502), "5"),
        (httpx.Response(503, headers={"Retry-After": "9"}), "9"),
        (httpx.Response(429, headers={"Retry-After": "17"}), "17"),
        (httpx.Response(429), "5"),
        (httpx.ReadTimeout("slow"), "5"),
        (httpx.ConnectTimeout("slow"), "5"),
        (httpx.ConnectError("refused"), "5"),
    ],
)
def test_provider_trouble_is_503_with_retry_after(me_client: TestClient, idp: FakeIdP, sign_in: SignIn,
                                                  failure: httpx.Response | Exception, retry_after: str) -> None:
    token = idp.issue_token("bob")
    sign_in(me_client, sub="bob")
    me_client.app.state.gateway.authenticator.cache.clear()  # the sign-in warmed it: ask the provider again
    if isinstance(failure, Exception):
        idp.mock.routes["userinfo"].mock(side_effect=failure)
    else:
        idp.mock.routes["userinfo"].mock(return_value=failure)
    by_header = me_client.get("/me", headers={"Authorization": f"Bearer {token}"})
    by_cookie = me_client.get("/me")
    for response in (by_header, by_cookie):
        assert response.status_code == 503  # never "invalid": the user keeps their session
        assert response.headers["retry-after"] == retry_after
        assert "www-authenticate" not in response.headers
    assert "gateway_token" in me_client.cookies


def test_valid_cookie_is_200(me_client: TestClient, sign_in: SignIn) -> None:
    sign_in(me_client, sub="bob")
    response = me_client.get("/me")
    assert response.status_code == 200
    assert response.json() == {"id": "idp:bob", "name": "Bob"}


def test_valid_header_wins_over_cookie(me_client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    sign_in(me_client, sub="alice")
    response = me_client.get("/me", headers={"Authorization": f"Bearer {idp.issue_token('bob')}"})
    assert response.json()["id"] == "idp:bob"


def test_cookie_with_a_revoked_token_is_401_invalid_token(me_client: TestClient, sign_in: SignIn,
                                                          idp: FakeIdP) -> None:
    sign_in(me_client, sub="bob")
    idp.tokens.clear()  # the provider forgot (revoked) every token
    me_client.app.state.gateway.authenticator.cache.clear()  # once the cached answer lapses:
    response = me_client.get("/me")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_tampered_cookie_is_401_like_no_cookie(me_client: TestClient, idp: FakeIdP) -> None:
    me_client.cookies.set("gateway_token", "gAAAAAjunk")
    response = me_client.get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert _userinfo_calls(idp) == 0
