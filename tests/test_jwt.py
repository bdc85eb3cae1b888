"""JwtValidator and JwksCache: local verification against the provider's JWKS, with an injected clock."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from gateway.errors import CredentialError, Forbidden, InsufficientScope, InvalidToken, ProviderUnavailable
from gateway.jwt_validator import JwksCache, JwtValidator
from gateway.validators import ProviderHTTP

ISSUER = "https://idp.test"
JWKS_URL = f"{ISSUER}/jwks"
CLIENT_ID = "gateway-client"
AUDIENCE = "https://api.test"
NOW = 1_700_000_000.0
LEEWAY = 30
REFRESH = 3600.0
MIN_REFETCH = 60.0



class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def keys() -> dict[str, RSAKey]:
    return {kid: RSAKey.generate_key(2048, parameters={"kid": kid}) for kid in ("k1", "k2", "k3")}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def published(keys: dict[str, RSAKey]) -> list[RSAKey]:
    """The keys the provider's JWKS serves right now; tests rotate by changing the list."""
    return [keys["k1"]]


@pytest.fixture
def provider(published: list[RSAKey]) -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        mock.get(JWKS_URL, name="jwks").mock(
            side_effect=lambda request: httpx.Response(
                200, json={"keys": [key.as_dict(private=False) for key in published]}
            )
        )
        yield mock


@pytest.fixture
async def http() -> AsyncIterator[ProviderHTTP]:
    async with httpx.AsyncClient() as client:
        yield ProviderHTTP("idp", client, 5.0, asyncio.Semaphore(32))


async def _issuer() -> str:
    return ISSUER


async def _jwks_uri() -> str:
    return JWKS_URL


MakeValidator = Callable[..., JwtValidator]


@pytest.fixture
def make_validator(http: ProviderHTTP, clock: Clock, provider: respx.MockRouter) -> MakeValidator:
    def make(refresh: float = REFRESH, min_refetch: float = MIN_REFETCH, **overrides: Any) -> JwtValidator:
        options: dict[str, Any] = {
            "algorithms": ["RS256"], "client_id": CLIENT_ID, "audience": None, "required_scopes": [],
            "allow_bots": False, "leeway": LEEWAY, "clock": clock,
        }
        options.update(overrides)
        jwks = JwksCache(http, _jwks_uri, refresh, min_refetch, clock=clock)
        return JwtValidator(http, _issuer, jwks, **options)

    return make


@pytest.fixture
def validator(make_validator: MakeValidator) -> JwtValidator:
    return make_validator()


Sign = Callable[..., str]


@pytest.fixture
def sign(keys: dict[str, RSAKey], clock: Clock) -> Sign:
    """An RS256 token for alice from ISSUER to CLIENT_ID, valid for 5 minutes from the clock's now.
    Keyword arguments override claims (None removes one)."""

    def make(kid: str = "k1", **overrides: Any) -> str:
        now = int(clock())
        claims: dict[str, Any] = {
            "iss": ISSUER, "sub": "alice", "aud": CLIENT_ID, "azp": CLIENT_ID, "iat": now, "exp": now + 300,
            "name": "Alice Example", "email": "alice@example.com", "scope": "openid chat",
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": kid}, claims, keys[kid])

    return make


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


def _claims() -> dict[str, Any]:
    return {"iss": ISSUER, "sub": "mallory", "aud": CLIENT_ID, "azp": CLIENT_ID, "iat": int(NOW),
            "exp": int(NOW) + 300}


async def _rejected(validator: JwtValidator, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await validator.validate(token)
    _assert_token_hidden(caught.value, token)
    return caught.value


def _assert_token_hidden(error: CredentialError, token: str) -> None:
    assert token not in str(error)
    assert token not in repr(error)


# --- valid tokens -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_valid_token_is_a_principal(validator: JwtValidator, sign: Sign, provider: respx.MockRouter) -> None:
    principal = await validator.validate(sign())
    assert principal.subject == "alice"
    assert principal.name == "Alice Example"
    assert principal.email == "alice@example.com"
    assert principal.provider == "idp"
    assert principal.scopes == ("openid", "chat")
    assert principal.expires_at == NOW + 300 + LEEWAY  # exp plus the clock-skew leeway it was accepted with
    assert principal.is_bot is False
    assert provider.routes["jwks"].call_count == 1


@pytest.mark.anyio
async def test_keys_are_fetched_once_for_many_tokens(validator: JwtValidator, sign: Sign,
                                                     provider: respx.MockRouter) -> None:
    for sub in ("alice", "bob", "carol"):
        assert (await validator.validate(sign(sub=sub))).subject == sub
    assert provider.routes["jwks"].call_count == 1


@pytest.mark.anyio
async def test_expired_token_is_invalid(validator: JwtValidator, sign: Sign) -> None:
    await _rejected(validator, sign(exp=int(NOW) - 31))


@pytest.mark.anyio
async def test_expired_within_leeway_is_accepted(validator: JwtValidator, sign: Sign) -> None:
    principal = await validator.validate(sign(exp=int(NOW) - 20))
    assert principal.subject == "alice"


@pytest.mark.anyio
async def test_token_not_yet_valid_is_invalid(validator: JwtValidator, sign: Sign) -> None:
    await _rejected(validator, sign(nbf=int(NOW) + 120))


@pytest.mark.anyio
async def test_nbf_within_leeway_is_accepted(validator: JwtValidator, sign: Sign) -> None:
    assert (await validator.validate(sign(nbf=int(NOW) + 20))).subject == "alice"


@pytest.mark.anyio
async def test_missing_exp_is_invalid(validator: JwtValidator, sign: Sign) -> None:
    await _rejected(validator, sign(exp=None))


@pytest.mark.anyio
@pytest.mark.parametrize("iss", ["https://evil.test", "https://idp.test/", None])
async def test_wrong_issuer_is_invalid(validator: JwtValidator, sign: Sign, iss: str | None) -> None:
    await _rejected(validator, sign(iss=iss))


@pytest.mark.anyio
async def test_tampered_claims_fail_the_signature(validator: JwtValidator, sign: Sign) -> None:
    header, _, signature = sign().split(".")
    forged = {**_claims(), "sub": "alice", "name": "Admin"}
    await _rejected(validator, f"{header}.{_segment(forged)}.{signature}")


@pytest.mark.anyio
async def test_token_signed_by_an_unpublished_key_with_a_published_kid_is_invalid(
        validator: JwtValidator, keys: dict[str, RSAKey]) -> None:
    token = jwt.encode({"alg": "RS256", "kid": "k1"}, _claims(), keys["k2"])
    await _rejected(validator, token)


@pytest.mark.anyio
@pytest.mark.parametrize("token", ["opaque-token-value", "a.b", "bm90.anNvbg.c2ln", "e30.W10.sig"])
async def test_not_a_jwt_is_invalid(validator: JwtValidator, provider: respx.MockRouter, token: str) -> None:
    await _rejected(validator, token)
    assert provider.routes["jwks"].call_count == 0


# --- audience -----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("aud", [AUDIENCE, [AUDIENCE, "https://other.test"]])
async def test_audience_matches(make_validator: MakeValidator, sign: Sign, aud: str | list[str]) -> None:
    validator = make_validator(audience=AUDIENCE)
    assert (await validator.validate(sign(aud=aud, azp="some-spa"))).subject == "alice"


@pytest.mark.anyio
@pytest.mark.parametrize("aud", ["https://other.test", ["https://other.test"], CLIENT_ID, None])
async def test_wrong_audience_is_invalid(make_validator: MakeValidator, sign: Sign,
                                         aud: str | list[str] | None) -> None:
    validator = make_validator(audience=AUDIENCE)
    await _rejected(validator, sign(aud=aud))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "account", "azp": CLIENT_ID},  # Keycloak
        {"aud": CLIENT_ID, "azp": None},
        {"aud": ["account", CLIENT_ID], "azp": None},
        {"aud": None, "azp": None, "client_id": CLIENT_ID},  # Okta-style
    ],
)
async def test_without_audience_the_token_must_be_for_our_client(validator: JwtValidator, sign: Sign,
                                                                 claims: dict[str, Any]) -> None:
    assert (await validator.validate(sign(**claims))).subject == "alice"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "account", "azp": "another-client"},
        {"aud": "another-client", "azp": None},
        {"aud": None, "azp": None},
        {"aud": "account", "azp": None, "client_id": "another-client"},
    ],
)
async def test_without_audience_a_token_for_another_client_is_invalid(validator: JwtValidator, sign: Sign,
                                                                      claims: dict[str, Any]) -> None:
    error = await _rejected(validator, sign(**claims))
    assert "AUDIENCE" in error.detail


# --- algorithms ---------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_invalid(validator: JwtValidator, provider: respx.MockRouter, alg: str) -> None:
    token = f"{_segment({'alg': alg, 'typ': 'JWT'})}.{_segment(_claims())}."
    await _rejected(validator, token)
    assert provider.routes["jwks"].call_count == 0


def _hs256_with_public_key(key: RSAKey, kid: str | None) -> str:
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    signing_input = f"{_segment(header)}.{_segment(_claims())}"
    secret = key.as_pem(private=False)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.anyio
@pytest.mark.parametrize("kid", ["k1", None])
async def test_hs256_signed_with_the_public_key_is_invalid(validator: JwtValidator, keys: dict[str, RSAKey],
                                                           kid: str | None) -> None:
    await _rejected(validator, _hs256_with_public_key(keys["k1"], kid))


@pytest.mark.anyio
async def test_hs256_is_refused_even_if_it_slipped_into_the_allow_list(make_validator: MakeValidator,
                                                                        keys: dict[str, RSAKey]) -> None:
    # Config refuses HS* in ALGORITHMS; the JWK type check is the second line of defence.
    validator = make_validator(algorithms=["RS256", "HS256"])
    await _rejected(validator, _hs256_with_public_key(keys["k1"], "k1"))


@pytest.mark.anyio
async def test_algorithm_not_in_the_list_is_invalid(validator: JwtValidator, keys: dict[str, RSAKey]) -> None:
    token = jwt.encode({"alg": "RS384", "kid": "k1"}, _claims(), keys["k1"], algorithms=["RS384"])
    error = await _rejected(validator, token)
    assert "RS256" in error.detail


@pytest.mark.anyio
async def test_es256_token_is_invalid_when_only_rs256_is_allowed(validator: JwtValidator) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    await _rejected(validator, jwt.encode({"alg": "ES256", "kid": "k1"}, _claims(), key))


# --- JWKS: rotation, refresh, outages -----------------------------------------------------------------


@pytest.mark.anyio
async def test_unknown_kid_refetches_at_most_once_per_min_refetch(
        validator: JwtValidator, sign: Sign, provider: respx.MockRouter, clock: Clock,
        published: list[RSAKey], keys: dict[str, RSAKey]) -> None:
    jwks = provider.routes["jwks"]
    await validator.validate(sign("k1"))
    assert jwks.call_count == 1

    clock.advance(MIN_REFETCH + 1)
    await _rejected(validator, sign("k2"))  # unknown: one refetch, still not published
    assert jwks.call_count == 2

    clock.advance(MIN_REFETCH / 2)
    published[:] = [keys["k1"], keys["k2"]]  # the provider rotates
    await _rejected(validator, sign("k3"))  # within min_refetch: no refetch
    await _rejected(validator, sign("k2"))  # published now, but we may not ask yet
    assert jwks.call_count == 2

    clock.advance(MIN_REFETCH / 2)
    assert (await validator.validate(sign("k2"))).subject == "alice"
    assert jwks.call_count == 3
    assert (await validator.validate(sign("k1"))).subject == "alice"  # old key still published
    assert jwks.call_count == 3


@pytest.mark.anyio
async def test_rotation_away_from_a_key_invalidates_its_tokens(
        validator: JwtValidator, sign: Sign, provider: respx.MockRouter, clock: Clock,
        published: list[RSAKey], keys: dict[str, RSAKey]) -> None:
    await validator.validate(sign("k1"))
    published[:] = [keys["k2"]]
    clock.advance(MIN_REFETCH + 1)
    assert (await validator.validate(sign("k2"))).subject == "alice"  # unknown kid → refetch
    await _rejected(validator, sign("k1"))  # k1 withdrawn
    assert provider.routes["jwks"].call_count == 2


@pytest.mark.anyio
async def test_concurrent_unknown_kids_share_one_refetch(validator: JwtValidator, sign: Sign,
                                                         provider: respx.MockRouter, clock: Clock,
                                                         published: list[RSAKey], keys: dict[str, RSAKey]) -> None:
    await validator.validate(sign("k1"))
    published.append(keys["k2"])
    clock.advance(MIN_REFETCH + 1)
    token = sign("k2")
    results = await asyncio.gather(*(validator.validate(token) for _ in range(50)))
    assert {p.subject for p in results} == {"alice"}
    assert provider.routes["jwks"].call_count == 2


@pytest.mark.anyio
async def test_jwks_is_refreshed_after_refresh_seconds(make_validator: MakeValidator, sign: Sign,
                                                       provider: respx.MockRouter, clock: Clock) -> None:
    validator = make_validator(refresh=300.0)
    await validator.validate(sign())
    clock.advance(299)
    await validator.validate(sign())
    assert provider.routes["jwks"].call_count == 1
    clock.advance(2)
    await validator.validate(sign())
    assert provider.routes["jwks"].call_count == 2


@pytest.mark.anyio
async def test_failed_refresh_keeps_the_keys_and_retries_after_min_refetch(
        make_validator: MakeValidator, sign: Sign, provider: respx.MockRouter, clock: Clock,
        published: list[RSAKey], caplog: pytest.LogCaptureFixture) -> None:
    validator = make_validator(refresh=300.0)
    await validator.validate(sign())
    jwks = provider.routes["jwks"]
    jwks.side_effect = httpx.Response(500)
    clock.advance(301)
    assert (await validator.validate(sign())).subject == "alice"  # stale keys still serve
    assert jwks.call_count == 2
    assert any("keeping the keys" in record.getMessage() for record in caplog.records)
    clock.advance(MIN_REFETCH - 1)
    await validator.validate(sign())
    assert jwks.call_count == 2
    jwks.side_effect = lambda request: httpx.Response(200, json={"keys": [k.as_dict(private=False) for k in published]})
    clock.advance(2)
    await validator.validate(sign())
    assert jwks.call_count == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(404),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"keys": [{"kty": "bogus"}]}),
        httpx.ConnectError,
        httpx.ReadTimeout,
    ],
    ids=["500", "404", "429", "html", "list", "bad-key", "connect-error", "timeout"],
)
async def test_jwks_unavailable_without_keys_is_provider_trouble(validator: JwtValidator, sign: Sign,
                                                                 provider: respx.MockRouter, answer: Any) -> None:
    provider.routes["jwks"].side_effect = answer
    with pytest.raises(ProviderUnavailable) as caught:
        await validator.validate(sign())
    assert caught.value.status == 503


@pytest.mark.anyio
async def test_validations_queued_behind_a_failed_jwks_fetch_share_its_failure(
        validator: JwtValidator, sign: Sign, provider: respx.MockRouter) -> None:
    jwks = provider.routes["jwks"]
    answer = jwks.side_effect

    async def timing_out(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)  # the others queue up meanwhile
        raise httpx.ConnectTimeout("timed out", request=request)

    jwks.side_effect = timing_out
    tokens = [sign(sub=f"user{i}") for i in range(20)]
    results = await asyncio.gather(*(validator.validate(token) for token in tokens), return_exceptions=True)
    assert all(isinstance(result, ProviderUnavailable) for result in results)
    assert jwks.call_count == 1  # not one timeout after another, each behind the last
    jwks.side_effect = answer
    assert (await validator.validate(sign())).subject == "alice"  # the next validation asks again
    assert jwks.call_count == 2


# --- scopes -------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("claims", [{"scope": "openid chat write"}, {"scope": None, "scp": ["chat", "write"]}])
async def test_required_scopes_present(make_validator: MakeValidator, sign: Sign, claims: dict[str, Any]) -> None:
    validator = make_validator(required_scopes=["chat", "write"])
    principal = await validator.validate(sign(**claims))
    assert {"chat", "write"} <= set(principal.scopes)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "claims",
    [{"scope": "openid chat"}, {"scope": None, "scp": ["chat"]}, {"scope": None}, {"scope": None, "scp": "chat"}],
)
async def test_required_scopes_missing_is_insufficient_scope(make_validator: MakeValidator, sign: Sign,
                                                             claims: dict[str, Any]) -> None:
    validator = make_validator(required_scopes=["chat", "write"])
    with pytest.raises(InsufficientScope) as caught:
        await validator.validate(sign(**claims))
    assert caught.value.status == 403
    assert caught.value.code == "insufficient_scope"
    assert "write" in caught.value.detail


# --- client-credentials tokens (bots) -----------------------------------------------------------------

BOT_CLAIMS = [
    {"sub": None, "azp": None, "client_id": "bot-client"},
    {"sub": "bot-client", "azp": "bot-client"},
    {"sub": "bot-client@clients", "azp": "bot-client", "gty": "client-credentials"},  # Auth0
]


@pytest.mark.anyio
@pytest.mark.parametrize("claims", BOT_CLAIMS, ids=["no-sub", "sub-is-client", "auth0"])
async def test_bot_token_is_forbidden_unless_allowed(make_validator: MakeValidator, sign: Sign,
                                                     claims: dict[str, Any]) -> None:
    validator = make_validator(audience=AUDIENCE)
    with pytest.raises(Forbidden) as caught:
        await validator.validate(sign(aud=AUDIENCE, name=None, email=None, **claims))
    assert caught.value.status == 403
    assert "ALLOW_BOTS" in caught.value.detail


@pytest.mark.anyio
@pytest.mark.parametrize("claims", BOT_CLAIMS, ids=["no-sub", "sub-is-client", "auth0"])
async def test_bot_token_is_a_bot_principal_when_allowed(make_validator: MakeValidator, sign: Sign,
                                                         claims: dict[str, Any]) -> None:
    validator = make_validator(audience=AUDIENCE, allow_bots=True)
    principal = await validator.validate(sign(aud=AUDIENCE, name=None, email=None, **claims))
    assert principal.is_bot is True
    assert principal.name == "bot-client"
    assert principal.subject == "bot-client"
    assert principal.expires_at == NOW + 300 + LEEWAY  # exp plus the clock-skew leeway it was accepted with


@pytest.mark.anyio
async def test_user_token_issued_through_our_client_is_not_a_bot(make_validator: MakeValidator,
                                                                 sign: Sign) -> None:
    validator = make_validator(allow_bots=True)
    principal = await validator.validate(sign(client_id=CLIENT_ID))
    assert principal.is_bot is False
    assert principal.name == "Alice Example"


@pytest.mark.anyio
async def test_signed_token_without_a_subject_is_invalid_not_provider_trouble(validator: JwtValidator,
                                                                               sign: Sign) -> None:
    with pytest.raises(InvalidToken):
        await validator.validate(sign(sub=None, azp=None))
