"""OpenID Connect Back-Channel Logout 1.0, §2.6: verifying a logout token. No web framework here.

A JWT signed with the provider's JWKS (asymmetric algorithms only, joserfc), `iss` the provider's issuer,
`aud` naming our client id, `iat` recent, `jti` seen once (gateway.replay), the back-channel logout event,
a `sid` or a `sub`, and no `nonce` (so that an ID token never passes for one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwt import JWTClaimsRegistry

from gateway.cookies import provider_id
from gateway.errors import GatewayError, InvalidToken
from gateway.jwt_validator import peek_jwt
from gateway.providers import Provider
from gateway.replay import ReplayCache, replay_key

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_LOGOUT_TOKEN_BYTES = 8 * 1024
JWS_COMPACT = re.compile(r"\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\Z")
JTI = re.compile(r"\A[\x21-\x7e]{1,255}\Z")


class InvalidLogoutToken(GatewayError):
    """400 `invalid_request` (§2.8): the token is refused and nothing changes."""

    code = "invalid_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class LogoutToken:
    issuer: str
    jti: str
    sid: str | None
    sub: str | None


class LogoutTokenVerifier:
    def __init__(self, replays: ReplayCache, max_age: float = 300.0, leeway: int = 30,
                 clock: Callable[[], float] = time.time) -> None:
        self.replays = replays
        self.max_age = max_age
        self.leeway = leeway
        self._clock = clock

    async def verify(self, provider: Provider, token: str) -> LogoutToken:
        """The token's claims once every check passed and its `jti` is spent; InvalidLogoutToken otherwise.
        ProviderUnavailable when the provider's keys cannot be loaded (nothing spent then)."""
        if len(token) > MAX_LOGOUT_TOKEN_BYTES or not JWS_COMPACT.fullmatch(token):
            raise InvalidLogoutToken("logout_token is not a signed JWT (JWS compact serialization)")
        peeked = peek_jwt(token)
        if peeked is None:
            raise InvalidLogoutToken("logout_token's header or claims are not JSON objects")
        header = peeked[0]
        algorithms = provider.algorithms()
        if header.get("alg") not in algorithms:  # "none" and HS* never are
            raise InvalidLogoutToken(f"logout_token must be signed with one of {', '.join(algorithms)}")
        kid = header.get("kid")
        metadata = await provider.metadata()
        try:
            keys = await provider.jwks.keyset(kid if isinstance(kid, str) else None)
        except InvalidToken as exc:
            raise InvalidLogoutToken(f"logout_token: {exc.detail}") from None
        issuer = str(metadata["issuer"])
        now = self._clock()
        try:
            claims = jwt.decode(token, keys, algorithms=algorithms).claims
            JWTClaimsRegistry(
                now=lambda: int(now), leeway=self.leeway,
                iss={"essential": True, "value": issuer}, aud={"essential": True, "value": provider.settings.client_id},
                iat={"essential": True}, jti={"essential": True},
            ).validate(claims)
        except JoseError as exc:
            raise InvalidLogoutToken(f"logout_token failed verification ({exc.error})") from None
        verified = self._check_claims(claims, now)
        if not await self.replays.first_use(replay_key(issuer, verified.jti), now + self.max_age + 2 * self.leeway):
            raise InvalidLogoutToken("logout_token was used before (its jti is spent)")
        return verified

    def _check_claims(self, claims: dict[str, Any], now: float) -> LogoutToken:
        if claims["iat"] < now - self.max_age - self.leeway:
            raise InvalidLogoutToken(f"logout_token was issued over {self.max_age:g} s ago")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
            raise InvalidLogoutToken(f"logout_token's events claim must hold {BACKCHANNEL_EVENT}")
        if "nonce" in claims:
            raise InvalidLogoutToken("logout_token must not carry a nonce")
        jti = claims["jti"]
        if not JTI.fullmatch(jti):
            raise InvalidLogoutToken("logout_token's jti must be 1-255 printable ASCII characters")
        sid = provider_id(claims["sid"]) if "sid" in claims else None
        sub = provider_id(claims["sub"]) if "sub" in claims else None
        if sid == "" or sub == "":
            raise InvalidLogoutToken("logout_token's sid and sub must be 1-255 printable ASCII characters")
        if sid is None and sub is None:
            raise InvalidLogoutToken("logout_token names neither a sid nor a sub")
        return LogoutToken(str(claims["iss"]), jti, sid, sub)
