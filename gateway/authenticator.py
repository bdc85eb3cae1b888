"""From credentials to a Principal: which provider, the cache, abuse limits. No web framework here."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from gateway.cache import DenyList, ValidationCache, cache_key
from gateway.config import Settings
from gateway.errors import InvalidRequest, InvalidToken, RateLimited
from gateway.jwt_validator import peek_jwt
from gateway.limits import KeyedBuckets
from gateway.providers import Provider, Providers
from gateway.tokens import Principal, check_token_syntax

log = logging.getLogger("gateway.auth")
SESSION_ENTRY = "session "  # a deny-list entry for a sign-in; no token holds a space (token68)
SID_ENTRY = "sid "  # a provider's session ended there (back-channel or front-channel logout)
USER_ENTRY = "user "  # every sign-in of a user at a provider before a time (sign-out everywhere)


@dataclass(frozen=True)
class Credentials:
    token: str
    source: str  # "header" | "subprotocol" | "cookie"
    provider: str | None = None  # known for cookies: the cookie records who issued the token
    expires_at: float | None = None
    session_ends: float | None = None  # GATEWAY_SESSION_MAX_AGE after sign-in (cookies)
    session_id: str | None = None  # the sign-in the cookie belongs to: refused once it signed out
    sid: str | None = None  # the provider's session of that sign-in (the ID token's `sid`)

    def __repr__(self) -> str:  # never show the token
        return f"Credentials(source={self.source!r}, provider={self.provider!r})"


class Authenticator:
    def __init__(self, settings: Settings, providers: Providers, clock: Callable[[], float] = time.time) -> None:
        self.providers = providers
        self.cache = ValidationCache(settings.validation_cache_ttl, settings.invalid_cache_ttl,
                                     settings.validation_cache_size, clock)
        self.failures = KeyedBuckets(settings.failed_auth_rate, settings.failed_auth_burst)
        self._asking: Counter[str] = Counter()  # provider calls running on behalf of each client address
        self.denied = DenyList(clock)
        self.session_max_age = settings.session_max_age
        self.jwt_leeway = settings.jwt_leeway
        self._clock = clock

    def provider_for(self, credentials: Credentials) -> Provider:
        """The cookie says who issued its token; a JWT's `iss` names its provider; anything else goes to
        GATEWAY_DEFAULT_PROVIDER. A token is only ever checked by the provider it is routed to."""
        if credentials.provider is not None:
            provider = self.providers.get(credentials.provider)
            if provider is None:
                raise InvalidToken("the sign-in's provider is no longer configured; sign in again")
            return provider
        peeked = peek_jwt(credentials.token)
        if peeked is not None:
            issuer = peeked[1].get("iss")
            if isinstance(issuer, str):
                provider = self.providers.by_issuer(issuer)
                if provider is not None:
                    return provider
        default = self.providers.get(self.providers.default)
        assert default is not None
        return default

    def check_client(self, client: str | None) -> None:
        if client is None:
            return
        # Provider calls still running count as failures: guesses sent all at once cannot outrun the limit.
        wait = self.failures.blocked_for(client, self._asking[client])
        if wait:
            raise RateLimited("too many failed sign-in attempts from this address; wait and retry", wait)

    async def principal(self, credentials: Credentials, client: str | None = None) -> Principal:
        """Validate (cached, single-flight). `client` is the peer address for the failed-attempt limit."""
        self.check_client(client)
        asking: str | None = None  # the client a provider call is counted for
        try:
            check_token_syntax(credentials.token)
            provider = self.provider_for(credentials)
            key = cache_key(provider.name, credentials.token)
            # Counted before any await, so requests sent all at once see each other's provider calls.
            if client is not None and not self.cache.answered(key):
                asking = client
                self._asking[client] += 1
            if await self.denied.denied(credentials.token):
                raise InvalidToken("this token was signed out; sign in again")
            if credentials.session_id and await self.session_ended(credentials.session_id):
                raise InvalidToken("this sign-in was signed out; sign in again")
            if credentials.sid and self.provider_session_ended(provider.name, credentials.sid):
                raise InvalidToken(f"{provider.title} ended this sign-in; sign in again")
            principal = await self.cache.get_or_validate(
                key, lambda: provider.validator.validate(credentials.token),
            )
            if credentials.session_ends is not None and self.signed_out_everywhere(
                    principal.user_id, credentials.session_ends - self.session_max_age):
                raise InvalidToken("this user signed out of every session; sign in again")
        except (InvalidToken, InvalidRequest):
            if client is not None:
                self.failures.record_failure(client)
            raise
        finally:
            if asking is not None:
                self._done_asking(asking)
        return self._bounded(principal, credentials)

    def _done_asking(self, client: str) -> None:
        self._asking[client] -= 1
        if self._asking[client] <= 0:
            del self._asking[client]

    async def deny(self, credentials: Credentials) -> None:
        """Refuse this token until it expires, whatever its provider says (logout): a copy a bot kept
        stops working too. With no known expiry, for GATEWAY_SESSION_MAX_AGE."""
        ends = [t for t in (credentials.expires_at, self._jwt_expiry(credentials.token)) if t]
        for provider in self.providers:  # a copy may be routed to any of them
            key = cache_key(provider.name, credentials.token)
            entry = self.cache.lookup(key)
            if entry is not None and entry.principal is not None and entry.principal.expires_at:
                ends.append(entry.principal.expires_at)
            self.cache.forget(key)
        await self.denied.add(credentials.token, max(ends) if ends else self._clock() + self.session_max_age)

    async def end_session(self, session_id: str, until: float) -> None:
        """Refuse a whole sign-in from now on (logout): its refresh cookie and every token cookie sealed for
        it, copies included, whatever the provider can revoke. Kept as the logouts are (Redis, SQLite)."""
        await self.denied.add(SESSION_ENTRY + session_id, until)

    async def session_ended(self, session_id: str) -> bool:
        return await self.denied.denied(SESSION_ENTRY + session_id)

    async def end_provider_session(self, provider: str, sid: str) -> None:
        """Refuse every sign-in made in the provider's session `sid` (its logout said so), for as long as
        such a sign-in could last."""
        await self.denied.add(f"{SID_ENTRY}{provider}\0{sid}", self._clock() + self.session_max_age)

    def provider_session_ended(self, provider: str, sid: str) -> bool:
        return self.denied.until(f"{SID_ENTRY}{provider}\0{sid}") is not None

    async def end_user_sessions(self, user_id: str, before: float) -> None:
        """Refuse every sign-in of `user_id` ("<provider>:<sub>") made up to `before`. The entry lasts as
        long as such a sign-in could (GATEWAY_SESSION_MAX_AGE), so it lapses at before + that."""
        await self.denied.add(USER_ENTRY + user_id, before + self.session_max_age)

    def signed_out_everywhere(self, user_id: str, signed_in_at: float) -> bool:
        """Whether a sign-in of `user_id` made at `signed_in_at` was ended by a sign-out everywhere."""
        until = self.denied.until(USER_ENTRY + user_id)
        return until is not None and signed_in_at <= until - self.session_max_age

    def _jwt_expiry(self, token: str) -> float | None:
        peeked = peek_jwt(token)
        exp = peeked[1].get("exp") if peeked else None
        return float(exp) + self.jwt_leeway if isinstance(exp, int | float) else None

    def _bounded(self, principal: Principal, credentials: Credentials) -> Principal:
        """The session ends at the earliest of the token's expiry, the cookie's and the session limit."""
        ends = [t for t in (principal.expires_at, credentials.expires_at, credentials.session_ends) if t]
        expires_at = min(ends) if ends else None
        if expires_at is not None and expires_at <= self._clock():
            raise InvalidToken("the session has expired; sign in again")
        return replace(principal, expires_at=expires_at) if expires_at != principal.expires_at else principal

    def recheck_at(self, principal: Principal, credentials: Credentials) -> float:
        """When an open socket must ask again: its cached answer lapsing, or the session ending."""
        provider = self.provider_for(credentials)
        lapses = self.cache.expires(cache_key(provider.name, credentials.token))
        candidates = [t for t in (lapses, principal.expires_at) if t]
        return min(candidates) if candidates else self._clock() + self.cache.valid_ttl
