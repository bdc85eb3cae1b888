"""IntrospectionValidator (RFC 7662): what each introspection answer means."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from gateway.errors import Forbidden, InsufficientScope, InvalidToken, ProviderUnavailable
from gateway.validators import IntrospectionValidator, ProviderHTTP

ISSUER = "https://idp.test"
INTROSPECT = f"{ISSUER}/introspect"
CLIENT_ID = "gateway-client"
CLIENT_SECRET = "s3cret-value"
AUDIENCE = "https://api.test"
VARIABLE = "GATEWAY_PROVIDERS__IDP"
NOW = 1_700_000_000.0
TOKEN = "opaque-" + "Zx9Yw8Vu" * 4  # a valid token68 string, long enough to spot anywhere



@pytest.fixture
def provider() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(INTROSPECT, name="introspect").respond(json=_active())
        yield mock


@pytest.fixture
async def http() -> AsyncIterator[ProviderHTTP]:
    async with httpx.AsyncClient() as client:
        yield ProviderHTTP("idp", client, 5.0, asyncio.Semaphore(32))


async def _endpoint() -> str:
    return INTROSPECT


def _active(**claims: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"active": True, "sub": "u-123", "username": "alice", "client_id": CLIENT_ID,
                              "scope": "openid chat", "exp": int(NOW) + 300, "token_type": "Bearer"}
    answer.update(claims)
    return {k: v for k, v in answer.items() if v is not None}


MakeValidator = Callable[..., IntrospectionValidator]


@pytest.fixture
def make_validator(http: ProviderHTTP, provider: respx.MockRouter) -> MakeValidator:
    def make(**overrides: Any) -> IntrospectionValidator:
        options: dict[str, Any] = {"audience": None, "required_scopes": [], "allow_bots": False}
        options.update(overrides)
        return IntrospectionValidator(http, _endpoint, CLIENT_ID, CLIENT_SECRET, variable=VARIABLE,
                                      clock=lambda: NOW, **options)

    return make


@pytest.fixture
def validator(make_validator: MakeValidator) -> IntrospectionValidator:
    return make_validator()


def _answer(provider: respx.MockRouter, answer: Any) -> None:
    provider.routes["introspect"].side_effect = answer


async def _rejected(validator: IntrospectionValidator) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await validator.validate(TOKEN)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    return caught.value


# --- active tokens ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_active_token_is_a_principal(validator: IntrospectionValidator) -> None:
    principal = await validator.validate(TOKEN)
    assert principal.subject == "u-123"
    assert principal.name == "alice"  # from username
    assert principal.provider == "idp"
    assert principal.scopes == ("openid", "chat")
    assert principal.expires_at == NOW + 300
    assert principal.is_bot is False


@pytest.mark.anyio
async def test_name_claim_wins_over_username(validator: IntrospectionValidator, provider: respx.MockRouter) -> None:
    _answer(provider, httpx.Response(200, json=_active(name="Alice Example")))
    assert (await validator.validate(TOKEN)).name == "Alice Example"


@pytest.mark.anyio
async def test_active_token_without_exp_has_no_expiry(validator: IntrospectionValidator,
                                                      provider: respx.MockRouter) -> None:
    _answer(provider, httpx.Response(200, json=_active(exp=None)))
    assert (await validator.validate(TOKEN)).expires_at is None


@pytest.mark.anyio
async def test_request_is_a_form_post_with_basic_client_auth(validator: IntrospectionValidator,
                                                             provider: respx.MockRouter) -> None:
    await validator.validate(TOKEN)
    request = provider.routes["introspect"].calls.last.request
    assert request.method == "POST"
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept"] == "application/json"
    form = parse_qs(request.content.decode())
    assert form == {"token": [TOKEN], "token_type_hint": ["access_token"]}


@pytest.mark.anyio
async def test_user_named_only_by_username_is_not_a_bot(validator: IntrospectionValidator,
                                                        provider: respx.MockRouter) -> None:
    # RFC 7662 makes `sub` optional: client_id + username is a user's token, not a client-credentials one.
    _answer(provider, httpx.Response(200, json=_active(sub=None)))
    principal = await validator.validate(TOKEN)
    assert principal.is_bot is False and principal.subject == "alice"


@pytest.mark.anyio
async def test_secret_with_reserved_characters_is_form_encoded_in_basic_auth(http: ProviderHTTP,
                                                                             provider: respx.MockRouter) -> None:
    validator = IntrospectionValidator(http, _endpoint, "gate way", "s+e%c:r/et", None, [], False, VARIABLE,
                                       clock=lambda: NOW)
    await validator.validate(TOKEN)
    sent = provider.routes["introspect"].calls.last.request.headers["authorization"].removeprefix("Basic ")
    assert base64.b64decode(sent).decode() == "gate+way:s%2Be%25c%3Ar%2Fet"  # RFC 6749 §2.3.1


# --- invalid tokens -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [{"active": False}, {}, {"active": "true"}, {"active": 1, "sub": "u-123"}])
async def test_inactive_token_is_invalid(validator: IntrospectionValidator, provider: respx.MockRouter,
                                         answer: dict[str, Any]) -> None:
    _answer(provider, httpx.Response(200, json=answer))
    await _rejected(validator)


@pytest.mark.anyio
@pytest.mark.parametrize("exp", [int(NOW) - 1, int(NOW)])
async def test_expired_token_is_invalid(validator: IntrospectionValidator, provider: respx.MockRouter,
                                        exp: int) -> None:
    _answer(provider, httpx.Response(200, json=_active(exp=exp)))
    await _rejected(validator)


@pytest.mark.anyio
@pytest.mark.parametrize("claims", [{"aud": "https://other.test"}, {"aud": ["a", "b"]}, {}])
async def test_audience_mismatch_is_invalid(make_validator: MakeValidator, provider: respx.MockRouter,
                                            claims: dict[str, Any]) -> None:
    _answer(provider, httpx.Response(200, json=_active(**claims)))
    await _rejected(make_validator(audience=AUDIENCE))


@pytest.mark.anyio
@pytest.mark.parametrize("claims", [{"aud": AUDIENCE}, {"aud": ["x", AUDIENCE]}, {"client_id": AUDIENCE}])
async def test_audience_match(make_validator: MakeValidator, provider: respx.MockRouter,
                              claims: dict[str, Any]) -> None:
    _answer(provider, httpx.Response(200, json=_active(**claims)))
    assert (await make_validator(audience=AUDIENCE).validate(TOKEN)).subject == "u-123"


# --- the gateway's own credentials refused ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
async def test_refused_client_credentials_are_a_configuration_fault(
        validator: IntrospectionValidator, provider: respx.MockRouter, caplog: pytest.LogCaptureFixture,
        status: int) -> None:
    _answer(provider, httpx.Response(status, json={"error": "invalid_client"}))
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 503
    assert validator.misconfigured is True
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{VARIABLE}__CLIENT_ID" in errors[0]
    assert f"{VARIABLE}__CLIENT_SECRET" in errors[0]
    assert all(TOKEN not in r.getMessage() and CLIENT_SECRET not in r.getMessage() for r in caplog.records)
    assert TOKEN not in str(caught.value)


@pytest.mark.anyio
async def test_misconfigured_clears_once_the_endpoint_accepts_us(validator: IntrospectionValidator,
                                                                 provider: respx.MockRouter) -> None:
    _answer(provider, [httpx.Response(401), httpx.Response(200, json=_active())])
    with pytest.raises(ProviderUnavailable):
        await validator.validate(TOKEN)
    assert validator.misconfigured is True
    await validator.validate(TOKEN)
    assert validator.misconfigured is False


# --- provider trouble ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 404, 429, 500, 502, 503])
async def test_other_statuses_are_provider_trouble(validator: IntrospectionValidator, provider: respx.MockRouter,
                                                   caplog: pytest.LogCaptureFixture, status: int) -> None:
    _answer(provider, httpx.Response(status, headers={"Retry-After": "17"}))
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 503
    assert caught.value.retry_after == 17
    assert validator.misconfigured is False
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                                   httpx.RemoteProtocolError])
async def test_transport_errors_are_provider_trouble(validator: IntrospectionValidator, provider: respx.MockRouter,
                                                     error: type[Exception]) -> None:
    _answer(provider, error)
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(TOKEN)
    assert TOKEN not in str(caught.value)


@pytest.mark.anyio
async def test_slow_provider_times_out(provider: respx.MockRouter) -> None:
    async def stall(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=_active())

    _answer(provider, stall)
    async with httpx.AsyncClient() as client:
        http = ProviderHTTP("idp", client, 0.05, asyncio.Semaphore(1))
        validator = IntrospectionValidator(http, _endpoint, CLIENT_ID, CLIENT_SECRET, None, [], False, VARIABLE,
                                           clock=lambda: NOW)
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await validator.validate(TOKEN)


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [httpx.Response(200, text="<html>login</html>"),
                                    httpx.Response(200, json=["active"]), httpx.Response(200, json=True)])
async def test_non_object_answer_is_provider_trouble(validator: IntrospectionValidator, provider: respx.MockRouter,
                                                     answer: httpx.Response) -> None:
    _answer(provider, answer)
    with pytest.raises(ProviderUnavailable):
        await validator.validate(TOKEN)


# --- scopes and bots ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_required_scopes_missing_is_insufficient_scope(make_validator: MakeValidator) -> None:
    with pytest.raises(InsufficientScope) as caught:
        await make_validator(required_scopes=["chat", "admin"]).validate(TOKEN)
    assert caught.value.status == 403
    assert "admin" in caught.value.detail


@pytest.mark.anyio
async def test_required_scopes_present(make_validator: MakeValidator) -> None:
    assert (await make_validator(required_scopes=["chat"]).validate(TOKEN)).subject == "u-123"


BOT_ANSWERS = [
    {"sub": None, "username": None, "client_id": "bot-client"},
    {"sub": "bot-client", "username": None, "client_id": "bot-client"},
    {"sub": "bot-client@clients", "username": None, "client_id": "bot-client", "gty": "client-credentials"},
]


@pytest.mark.anyio
@pytest.mark.parametrize("claims", BOT_ANSWERS, ids=["no-sub", "sub-is-client", "auth0"])
async def test_bot_token_is_forbidden_unless_allowed(validator: IntrospectionValidator, provider: respx.MockRouter,
                                                     claims: dict[str, Any]) -> None:
    _answer(provider, httpx.Response(200, json=_active(**claims)))
    with pytest.raises(Forbidden) as caught:
        await validator.validate(TOKEN)
    assert caught.value.status == 403
    assert not isinstance(caught.value, InsufficientScope)


@pytest.mark.anyio
@pytest.mark.parametrize("claims", BOT_ANSWERS, ids=["no-sub", "sub-is-client", "auth0"])
async def test_bot_token_is_a_bot_principal_when_allowed(make_validator: MakeValidator, provider: respx.MockRouter,
                                                         claims: dict[str, Any]) -> None:
    _answer(provider, httpx.Response(200, json=_active(**claims)))
    principal = await make_validator(allow_bots=True).validate(TOKEN)
    assert principal.is_bot is True
    assert principal.name == "bot-client"
    assert principal.subject == "bot-client"
    assert principal.scopes == ("openid", "chat")
    assert principal.expires_at == NOW + 300


@pytest.mark.anyio
async def test_bot_token_still_needs_the_required_scopes(make_validator: MakeValidator,
                                                         provider: respx.MockRouter) -> None:
    _answer(provider, httpx.Response(200, json=_active(**BOT_ANSWERS[0])))
    with pytest.raises(InsufficientScope):
        await make_validator(allow_bots=True, required_scopes=["admin"]).validate(TOKEN)
