"""UserinfoValidator (docs/sessions.md): what each provider answer means, and junk that never reaches it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from gateway.errors import CredentialError, InvalidRequest, InvalidToken, ProviderUnavailable
from gateway.tokens import MAX_TOKEN_BYTES, Principal, check_token_syntax, fingerprint
from gateway.validators import ProviderHTTP, UserinfoValidator

ISSUER = "https://idp.test"
USERINFO = f"{ISSUER}/userinfo"
TOKEN = "tok-" + "A1b2C3d4" * 4  # a valid token68 string, long enough to spot anywhere



@pytest.fixture
def provider() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ISSUER, assert_all_called=False) as mock:
        mock.get("/userinfo", name="userinfo").respond(json={"sub": "u1"})
        yield mock


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def _endpoint() -> str:
    return USERINFO


@pytest.fixture
def validator(http: httpx.AsyncClient) -> UserinfoValidator:
    return UserinfoValidator(ProviderHTTP("idp", http, 2.0, asyncio.Semaphore(8)), _endpoint)


def _assert_token_hidden(error: BaseException, token: str = TOKEN) -> None:
    assert token not in str(error)
    assert token not in repr(error)
    if isinstance(error, CredentialError):
        assert token not in error.detail
        assert token not in (error.challenge or "")


def _assert_not_logged(caplog: pytest.LogCaptureFixture, token: str = TOKEN) -> None:
    assert all(token not in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_200_is_a_principal(provider: respx.MockRouter, validator: UserinfoValidator) -> None:
    provider.routes["userinfo"].respond(json={
        "sub": "u1", "name": "Ann Example", "preferred_username": "ann", "email": "ann@example.com",
        "groups": ["admins", 7, "chat"],
    })
    principal = await validator.validate(TOKEN)
    assert principal == Principal(subject="u1", name="Ann Example", provider="idp", email="ann@example.com",
                                  groups=("admins", "chat"), expires_at=None)
    assert principal.user_id == "idp:u1"
    assert principal.public() == {"id": "idp:u1", "name": "Ann Example"}
    assert TOKEN not in repr(principal)
    request = provider.routes["userinfo"].calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.method == "GET"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({"sub": "u1", "name": " Ann ", "preferred_username": "ann", "email": "a@x.test"}, "Ann"),
        ({"sub": "u1", "name": "", "preferred_username": "ann", "email": "a@x.test"}, "ann"),
        ({"sub": "u1", "preferred_username": "ann", "email": "a@x.test"}, "ann"),
        ({"sub": "u1", "email": "a@x.test"}, "a@x.test"),
        ({"sub": "u1"}, "u1"),
        ({"sub": "u1", "name": 42}, "u1"),
    ],
)
async def test_display_name_falls_back(provider: respx.MockRouter, validator: UserinfoValidator,
                                       claims: dict[str, Any], name: str) -> None:
    provider.routes["userinfo"].respond(json=claims)
    assert (await validator.validate(TOKEN)).name == name


@pytest.mark.anyio
async def test_missing_optional_claims(provider: respx.MockRouter, validator: UserinfoValidator) -> None:
    provider.routes["userinfo"].respond(json={"sub": "u1", "email": ["not", "a", "string"], "groups": "admins"})
    principal = await validator.validate(TOKEN)
    assert principal.email is None
    assert principal.groups == ()
    assert principal.expires_at is None
    assert principal.is_bot is False


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refusal_is_invalid_token(provider: respx.MockRouter, validator: UserinfoValidator,
                                        caplog: pytest.LogCaptureFixture, status: int) -> None:
    provider.routes["userinfo"].respond(status, json={"error": "invalid_token"})
    with caplog.at_level(logging.DEBUG), pytest.raises(InvalidToken) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 401
    assert caught.value.challenge is not None and 'error="invalid_token"' in caught.value.challenge
    _assert_token_hidden(caught.value)
    _assert_not_logged(caplog)
    assert any(fingerprint(TOKEN) in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [404, 405, 429, 500, 502, 503, 504, 302])
async def test_other_statuses_are_provider_trouble(provider: respx.MockRouter, validator: UserinfoValidator,
                                                   status: int) -> None:
    provider.routes["userinfo"].respond(status)
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 503
    assert str(status) in caught.value.detail
    assert caught.value.retry_after == 5  # no Retry-After from the provider: the default
    _assert_token_hidden(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [(429, "30", 30), (503, "12", 12), (429, "0", 1), (429, "86400", 300),
     (429, "Wed, 21 Oct 2015 07:28:00 GMT", 5), (503, "-3", 5)],
)
async def test_retry_after_is_honoured(provider: respx.MockRouter, validator: UserinfoValidator,
                                       status: int, header: str, expected: int) -> None:
    provider.routes["userinfo"].respond(status, headers={"Retry-After": header})
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert caught.value.retry_after == expected


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.PoolTimeout("slow"),
     httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.RemoteProtocolError("garbage")],
)
async def test_transport_failures_are_provider_trouble(provider: respx.MockRouter,
                                                       validator: UserinfoValidator,
                                                       error: httpx.HTTPError) -> None:
    provider.routes["userinfo"].mock(side_effect=error)
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 503
    assert caught.value.retry_after >= 1
    assert caught.value.__cause__ is None  # raised "from None": no httpx request (with the header) attached
    _assert_token_hidden(caught.value)


@pytest.mark.anyio
async def test_timeout_is_passed_to_the_request(provider: respx.MockRouter, validator: UserinfoValidator) -> None:
    await validator.validate(TOKEN)
    timeout = provider.routes["userinfo"].calls.last.request.extensions["timeout"]
    assert timeout == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>hello</html>"),
        httpx.Response(200, content=b""),
        httpx.Response(204),
        httpx.Response(200, json=["sub", "u1"]),
        httpx.Response(200, json="u1"),
        httpx.Response(200, json=None),
        httpx.Response(200, json={"name": "no subject"}),
        httpx.Response(200, json={"sub": ""}),
        httpx.Response(200, json={"sub": 12}),
    ],
)
async def test_unusable_answers_are_provider_trouble(provider: respx.MockRouter, validator: UserinfoValidator,
                                                     response: httpx.Response) -> None:
    provider.routes["userinfo"].mock(return_value=response)
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    _assert_token_hidden(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "token",
    [
        "a" * (MAX_TOKEN_BYTES + 1),
        "a" * 9000,
        "tökén",
        "abc\u00a0def",
        "abc def",
        " abc",
        "abc ",
        "abc\tdef",
        "abc\n",
        "abc\r\nX-Injected: 1",
        "",
        "=abc",
        "abc=def",
        "abc,def",
        "abc\"def",
    ],
)
async def test_bad_token_syntax_is_refused_without_a_provider_call(provider: respx.MockRouter,
                                                                   validator: UserinfoValidator,
                                                                   token: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await validator.validate(token)
    assert caught.value.status == 400
    assert provider.routes["userinfo"].call_count == 0
    if token.strip():
        _assert_token_hidden(caught.value, token)


@pytest.mark.parametrize("token", ["a" * MAX_TOKEN_BYTES, "abc", "a-b.c_d~e+f/g", "abc==", TOKEN])
def test_token68_strings_pass_the_syntax_check(token: str) -> None:
    assert check_token_syntax(token) == token


def test_fingerprint_is_short_and_stable() -> None:
    assert fingerprint(TOKEN) == fingerprint(TOKEN)
    assert fingerprint(TOKEN) != fingerprint(TOKEN + "x")
    assert len(fingerprint(TOKEN)) == 16
    assert TOKEN not in fingerprint(TOKEN)
