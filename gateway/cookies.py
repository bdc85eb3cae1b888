"""The token cookie, in one place: sealed with AEAD, read, set and cleared.

Keys come from GATEWAY_SECRET_KEYS through HKDF, one derived key per purpose; the first secret seals,
all of them open (rotation). Fernet is AES-128-CBC + HMAC-SHA256: authenticated encryption.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import HTTPConnection
from starlette.responses import Response

MAX_COOKIE_BYTES = 4000  # browsers keep at least 4096 bytes per cookie, name and attributes included


def derive_key(secret: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"gateway {purpose}".encode()).derive(
        secret.encode()
    )


class Sealer:
    """Authenticated encryption of small JSON payloads, with key rotation."""

    def __init__(self, secrets: Sequence[str], purpose: str, clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("Sealer needs at least one secret")
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(derive_key(s, purpose))) for s in secrets]
        )
        self._clock = clock

    def seal(self, payload: dict[str, Any]) -> str:
        data = json.dumps(payload, separators=(",", ":")).encode()
        return self._fernet.encrypt_at_time(data, int(self._clock())).decode("ascii")

    def open(self, sealed: str, max_age: int) -> dict[str, Any] | None:
        """The payload, or None for anything tampered, foreign, expired or malformed."""
        try:
            data = self._fernet.decrypt_at_time(sealed.encode("ascii"), max_age, int(self._clock()))
            payload = json.loads(data)
        except (InvalidToken, UnicodeError, ValueError):
            return None
        return payload if isinstance(payload, dict) else None


@dataclass(frozen=True)
class TokenSession:
    provider: str
    access_token: str
    expires_at: float | None
    auth_time: float  # when the user signed in: GATEWAY_SESSION_MAX_AGE counts from here, across refreshes


class TokenCookie:
    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time) -> None:
        self.sealer = sealer
        self.secure = https
        # __Host-: only sent to this exact host, Secure, Path=/ — browsers enforce it on https.
        self.name = "__Host-gateway_token" if https else "gateway_token"
        self.max_age = max_age
        self._clock = clock

    def read(self, conn: HTTPConnection) -> TokenSession | None:
        raw = conn.cookies.get(self.name)
        if not raw:
            return None
        payload = self.sealer.open(raw, self.max_age)
        if payload is None:
            return None
        provider, token, expires_at, auth_time = payload.get("p"), payload.get("t"), payload.get("e"), payload.get("a")
        if not isinstance(provider, str) or not isinstance(token, str) or not isinstance(auth_time, int | float):
            return None
        if expires_at is not None and not isinstance(expires_at, int | float):
            return None
        if auth_time + self.max_age <= self._clock():
            return None
        return TokenSession(provider, token, expires_at, auth_time)

    def seal(self, session: TokenSession) -> tuple[str, int]:
        """The cookie value and its Max-Age: the earlier of the token's expiry and the session limit."""
        now = self._clock()
        max_age = max(0, int(session.auth_time + self.max_age - now))
        if session.expires_at is not None:
            max_age = max(0, min(max_age, int(session.expires_at - now)))
        value = self.sealer.seal({"p": session.provider, "t": session.access_token, "e": session.expires_at,
                                  "a": session.auth_time})
        if len(value) + len(self.name) > MAX_COOKIE_BYTES:
            raise ValueError("the provider's token is too large for a cookie")
        return value, max_age

    def set(self, response: Response, session: TokenSession) -> None:
        value, max_age = self.seal(session)
        response.set_cookie(
            self.name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="lax")


@dataclass(frozen=True)
class RefreshSession:
    provider: str
    refresh_token: str
    auth_time: float


class RefreshCookie:
    """The refresh token, sealed, sent only to POST /auth/refresh (Path) and never to scripts."""

    PATH = "/auth/refresh"

    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time) -> None:
        self.sealer = sealer
        self.secure = https
        # __Host- requires Path=/; __Secure- still pins it to https.
        self.name = "__Secure-gateway_refresh" if https else "gateway_refresh"
        self.max_age = max_age
        self._clock = clock

    def read(self, conn: HTTPConnection) -> RefreshSession | None:
        raw = conn.cookies.get(self.name)
        payload = self.sealer.open(raw, self.max_age) if raw else None
        if payload is None:
            return None
        provider, token, auth_time = payload.get("p"), payload.get("r"), payload.get("a")
        if not isinstance(provider, str) or not isinstance(token, str) or not isinstance(auth_time, int | float):
            return None
        if auth_time + self.max_age <= self._clock():
            return None
        return RefreshSession(provider, token, auth_time)

    def set(self, response: Response, session: RefreshSession) -> bool:
        """False (and nothing set) when the refresh token is too big to keep in a cookie."""
        value = self.sealer.seal({"p": session.provider, "r": session.refresh_token, "a": session.auth_time})
        if len(value) + len(self.name) > MAX_COOKIE_BYTES:
            return False
        max_age = max(0, int(session.auth_time + self.max_age - self._clock()))
        response.set_cookie(self.name, value, max_age=max_age, path=self.PATH, secure=self.secure, httponly=True,
                            samesite="strict")
        return True

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path=self.PATH, secure=self.secure, httponly=True, samesite="strict")
