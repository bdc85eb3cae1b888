"""ValidationCache (TTL, LRU, single-flight) on its own, and through the Authenticator against FakeIdP:
provider call counts, routing, the per-address failure limit, and tokens kept out of logs and errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt

from gateway.authenticator import Authenticator, Credentials
from gateway.cache import ValidationCache, cache_key
from gateway.errors import InvalidRequest, InvalidToken, ProviderUnavailable, RateLimited
from gateway.providers import Providers
from gateway.tokens import MAX_TOKEN_BYTES, Principal
from tests.conftest import ISSUER, FakeIdP, SettingsFactory

NOW = 1_700_000_000.0
OTHER = "https://other.test"



class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Validations:
    """A stand-in for a provider: counts calls, answers what it is told."""

    def __init__(self, answer: Principal | Exception) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> Principal:
        self.calls += 1
        await asyncio.sleep(0)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _principal(expires_at: float | None = None) -> Principal:
    return Principal(subject="alice", name="Alice", provider="idp", expires_at=expires_at)


# --- ValidationCache ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("expires_in", "kept_for"), [(30.0, 30.0), (600.0, 60.0), (None, 60.0)])
async def test_valid_answer_is_kept_until_expiry_or_valid_ttl(expires_in: float | None, kept_for: float) -> None:
    clock = Clock()
    cache = ValidationCache(valid_ttl=60.0, clock=clock)
    provider = Validations(_principal(NOW + expires_in if expires_in is not None else None))
    await cache.get_or_validate("k", provider)
    assert cache.expires("k") == NOW + kept_for
    clock.advance(kept_for - 1)
    await cache.get_or_validate("k", provider)
    assert provider.calls == 1
    clock.advance(1)
    await cache.get_or_validate("k", provider)
    assert provider.calls == 2


@pytest.mark.anyio
async def test_already_expired_principal_is_not_kept() -> None:
    cache = ValidationCache(clock=Clock())
    await cache.get_or_validate("k", Validations(_principal(NOW - 1)))
    assert len(cache) == 0


@pytest.mark.anyio
async def test_invalid_answer_is_kept_for_invalid_ttl() -> None:
    clock = Clock()
    cache = ValidationCache(invalid_ttl=10.0, clock=clock)
    provider = Validations(InvalidToken("the provider does not accept this token"))
    for _ in range(3):
        with pytest.raises(InvalidToken):
            await cache.get_or_validate("k", provider)
    assert provider.calls == 1
    clock.advance(10)
    with pytest.raises(InvalidToken):
        await cache.get_or_validate("k", provider)
    assert provider.calls == 2


@pytest.mark.anyio
async def test_provider_trouble_is_never_kept() -> None:
    cache = ValidationCache(clock=Clock())
    provider = Validations(ProviderUnavailable("provider 'idp' answered 503"))
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await cache.get_or_validate("k", provider)
    assert provider.calls == 3
    assert len(cache) == 0
    provider.answer = _principal()
    assert await cache.get_or_validate("k", provider) == _principal()


@pytest.mark.anyio
async def test_lru_bound_evicts_the_least_recently_used() -> None:
    cache = ValidationCache(max_entries=3, clock=Clock())
    provider = Validations(_principal())
    for key in ("a", "b", "c"):
        await cache.get_or_validate(key, provider)
    await cache.get_or_validate("a", provider)  # a is now the most recent
    await cache.get_or_validate("d", provider)
    assert len(cache) == 3
    assert cache.expires("b") is None
    assert all(cache.expires(key) is not None for key in ("a", "c", "d"))
    assert provider.calls == 4


@pytest.mark.anyio
async def test_concurrent_lookups_share_one_call_and_its_error() -> None:
    cache = ValidationCache(clock=Clock())
    provider = Validations(InvalidToken("the provider does not accept this token"))
    results = await asyncio.gather(*(cache.get_or_validate("k", provider) for _ in range(100)),
                                   return_exceptions=True)
    assert all(isinstance(result, InvalidToken) for result in results)
    assert provider.calls == 1


@pytest.mark.anyio
async def test_a_cancelled_sole_caller_still_lets_the_answer_be_kept() -> None:
    cache = ValidationCache(clock=Clock())
    gate = asyncio.Event()
    provider = Validations(_principal())

    async def slow() -> Principal:
        await gate.wait()
        return await provider()

    caller = asyncio.create_task(cache.get_or_validate("k", slow))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    refuse = Validations(InvalidToken("asked again"))  # answers only if the first call was lost
    assert await cache.get_or_validate("k", refuse) == _principal()
    assert (provider.calls, refuse.calls) == (1, 0)


def test_keys_are_hashes() -> None:
    token = "secret-token-value-1234567890"
    key = cache_key("idp", token)
    assert len(key) == 64
    assert token not in key
    assert key != cache_key("other", token)


# --- through the Authenticator, against FakeIdP -------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http_client:
        yield http_client


MakeAuthenticator = Callable[..., Authenticator]


@pytest.fixture
def make_authenticator(idp: FakeIdP, make_settings: SettingsFactory, client: httpx.AsyncClient) -> MakeAuthenticator:
    def make(clock: Callable[[], float] | None = None, **overrides: Any) -> Authenticator:
        settings = make_settings(**overrides)
        providers = Providers(settings, client)
        return Authenticator(settings, providers, clock) if clock else Authenticator(settings, providers)

    return make


def _header(token: str) -> Credentials:
    return Credentials(token=token, source="header")


@pytest.mark.anyio
async def test_one_token_1000_concurrent_validations_make_one_call(idp: FakeIdP,
                                                                   make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator()
    token = idp.issue_token("alice")
    results = await asyncio.gather(*(authenticator.principal(_header(token)) for _ in range(1000)))
    assert {p.subject for p in results} == {"alice"}
    assert idp.mock.routes["userinfo"].call_count == 1
    assert idp.mock.routes["discovery"].call_count == 1


@pytest.mark.anyio
async def test_1000_distinct_tokens_make_1000_calls_and_none_more_within_the_ttl(
        idp: FakeIdP, make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator()
    tokens = [idp.issue_token(f"user{i}") for i in range(1000)]
    for _ in range(2):
        results = await asyncio.gather(*(authenticator.principal(_header(token)) for token in tokens))
        assert [p.subject for p in results] == [f"user{i}" for i in range(1000)]
        assert idp.mock.routes["userinfo"].call_count == 1000


@pytest.mark.anyio
async def test_valid_answer_is_asked_again_after_the_ttl(idp: FakeIdP,
                                                         make_authenticator: MakeAuthenticator) -> None:
    clock = Clock()
    authenticator = make_authenticator(clock=clock, validation_cache_ttl=30)
    token = idp.issue_token("alice")
    await authenticator.principal(_header(token))
    clock.advance(29)
    await authenticator.principal(_header(token))
    assert idp.mock.routes["userinfo"].call_count == 1
    clock.advance(1)
    await authenticator.principal(_header(token))
    assert idp.mock.routes["userinfo"].call_count == 2


@pytest.mark.anyio
async def test_a_cancelled_first_caller_does_not_cancel_the_shared_call(
        idp: FakeIdP, make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator()
    token = idp.issue_token("alice")
    started, gate = asyncio.Event(), asyncio.Event()
    userinfo = idp.mock.routes["userinfo"]

    async def held(request: httpx.Request) -> httpx.Response:
        started.set()
        await gate.wait()
        return httpx.Response(200, json={"sub": "alice", "name": "Alice"})

    userinfo.side_effect = held
    first = asyncio.create_task(authenticator.principal(_header(token)))
    await started.wait()  # the provider call is under way
    others = [asyncio.create_task(authenticator.principal(_header(token))) for _ in range(10)]
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    results = await asyncio.gather(*others)
    assert {p.subject for p in results} == {"alice"}
    assert userinfo.call_count == 1


@pytest.mark.anyio
async def test_token_never_shows_in_logs_errors_or_reprs(idp: FakeIdP, make_authenticator: MakeAuthenticator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    authenticator = make_authenticator()
    good, bad = idp.issue_token("alice"), "unknown-" + "Qw3rTy" * 6
    errors: list[BaseException] = []
    with caplog.at_level(logging.DEBUG):
        await authenticator.principal(_header(good), client="192.0.2.1")
        with pytest.raises(InvalidToken) as invalid:
            await authenticator.principal(_header(bad), client="192.0.2.1")
        errors.append(invalid.value)
        idp.mock.routes["userinfo"].side_effect = httpx.Response(500)
        trouble_token = idp.issue_token("bob")
        with pytest.raises(ProviderUnavailable) as trouble:
            await authenticator.principal(_header(trouble_token))
        errors.append(trouble.value)
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [repr(authenticator.cache), repr(_header(good)), repr(await authenticator.principal(_header(good)))]
    for token in (good, bad, trouble_token):
        assert all(token not in text for text in texts)
    assert authenticator.cache.expires(cache_key("idp", good)) is not None  # kept, under its hash


# --- routing ------------------------------------------------------------------------------------------


@pytest.fixture
def other(idp: FakeIdP) -> FakeIdP:
    """A second provider on the same mock: discovery and a userinfo that knows everyone as bob."""
    discovery = {**idp.discovery, "issuer": OTHER, "userinfo_endpoint": f"{OTHER}/userinfo",
                 "jwks_uri": f"{OTHER}/jwks"}
    idp.mock.get(f"{OTHER}/.well-known/openid-configuration", name="other-discovery").respond(json=discovery)
    idp.mock.get(f"{OTHER}/userinfo", name="other-userinfo").respond(json={"sub": "bob"})
    return idp


def _two_providers(default: str = "idp") -> dict[str, Any]:
    return {
        "providers": {
            "idp": {"issuer": ISSUER, "client_id": "gateway-client", "client_secret": "s3cret"},
            "other": {"issuer": OTHER, "client_id": "other-client", "client_secret": "s3cret"},
        },
        "default_provider": default,
    }


def _jwt(idp: FakeIdP, iss: str) -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": iss, "sub": "someone"}, idp.key)


@pytest.mark.anyio
async def test_jwt_goes_to_the_provider_named_by_its_issuer(other: FakeIdP,
                                                            make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator(**_two_providers())
    for iss in (OTHER, OTHER + "/"):
        principal = await authenticator.principal(_header(_jwt(other, iss)))
        assert (principal.provider, principal.subject) == ("other", "bob")
    assert other.mock.routes["other-userinfo"].call_count == 2
    assert other.mock.routes["userinfo"].call_count == 0


@pytest.mark.anyio
async def test_jwt_of_the_default_provider_is_routed_by_issuer_not_default(
        other: FakeIdP, make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator(**_two_providers(default="other"))
    token = _jwt(other, ISSUER)
    other.tokens[token] = {"sub": "alice"}
    principal = await authenticator.principal(_header(token))
    assert (principal.provider, principal.subject) == ("idp", "alice")
    assert other.mock.routes["other-userinfo"].call_count == 0


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["opaque", "unknown-issuer"])
async def test_other_tokens_go_to_the_default_provider(other: FakeIdP, make_authenticator: MakeAuthenticator,
                                                       kind: str) -> None:
    authenticator = make_authenticator(**_two_providers())
    token = other.issue_token("alice") if kind == "opaque" else _jwt(other, "https://stranger.test")
    other.tokens.setdefault(token, {"sub": "alice"})
    principal = await authenticator.principal(_header(token))
    assert (principal.provider, principal.subject) == ("idp", "alice")
    assert other.mock.routes["other-userinfo"].call_count == 0


@pytest.mark.anyio
async def test_cookie_names_its_provider(other: FakeIdP, make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator(**_two_providers())
    token = other.issue_token("alice")  # opaque: would go to the default without the cookie's word
    principal = await authenticator.principal(Credentials(token=token, source="cookie", provider="other"))
    assert principal.provider == "other"
    assert other.mock.routes["userinfo"].call_count == 0


# --- abuse limits -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_failures_from_one_address_are_rate_limited_before_any_provider_call(
        idp: FakeIdP, make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator(failed_auth_burst=3, failed_auth_rate=0.01)
    userinfo = idp.mock.routes["userinfo"]
    for i in range(3):
        with pytest.raises(InvalidToken):
            await authenticator.principal(_header(f"wrong-token-{i}"), client="203.0.113.7")
    assert userinfo.call_count == 3
    good = idp.issue_token("alice")
    with pytest.raises(RateLimited) as caught:
        await authenticator.principal(_header(good), client="203.0.113.7")
    assert caught.value.retry_after >= 1
    assert caught.value.status == 429
    assert userinfo.call_count == 3
    assert (await authenticator.principal(_header(good), client="198.51.100.2")).subject == "alice"
    assert (await authenticator.principal(_header(good))).subject == "alice"  # no address: no limit


@pytest.mark.anyio
async def test_oversized_token_is_refused_without_a_provider_call(idp: FakeIdP,
                                                                  make_authenticator: MakeAuthenticator) -> None:
    authenticator = make_authenticator()
    with pytest.raises(InvalidRequest) as caught:
        await authenticator.principal(_header("a" * (MAX_TOKEN_BYTES + 1)), client="203.0.113.7")
    assert caught.value.status == 400
    assert idp.mock.routes["userinfo"].call_count == 0
    assert idp.mock.routes["discovery"].call_count == 0
