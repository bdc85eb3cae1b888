"""The token cookie, in one place: sealed with AEAD, read, set and cleared.

Keys come from GATEWAY_SECRET_KEYS through HKDF, one derived key per purpose; the first secret seals,
all of them open (rotation). Fernet is AES-128-CBC + HMAC-SHA256: authenticated encryption.

A token too big for one cookie is compressed and split over numbered chunk cookies (`gateway_token`
holds the count and the first chunk, `gateway_token.1` the next); the seal covers the whole value, so a
missing, stale or tampered chunk reads as no cookie at all.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import HTTPConnection
from starlette.responses import Response

MAX_COOKIE_BYTES = 4000  # browsers keep at least 4096 bytes per cookie, name and attributes included
# Browsers send every cookie in one Cookie header line, and the WebSocket handshake parser (websockets)
# answers 431 to a line over 8,192 bytes: the token's cookies together stay under this, leaving room for
# a few others. A token that does not fit fails at sign-in, not at every chat connect.
MAX_TOKEN_COOKIES_BYTES = 7168
CHUNK_BYTES = MAX_COOKIE_BYTES - 64  # one chunk's value; its name is short
MAX_CHUNKS = -(-MAX_TOKEN_COOKIES_BYTES // CHUNK_BYTES)
MAX_PLAINTEXT_BYTES = 64 * 1024  # what a compressed seal may inflate to


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

    def seal(self, payload: dict[str, Any], compress: bool = False) -> str:
        """`compress` for big payloads: a JWT's base64 text deflates to about three quarters. Nothing an
        attacker chooses is sealed next to the secret, so compression leaks nothing (no CRIME)."""
        data = json.dumps(payload, separators=(",", ":")).encode()
        if compress:
            deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
            data = b"z" + deflate.compress(data) + deflate.flush()  # JSON never starts with "z"
        return self._fernet.encrypt_at_time(data, int(self._clock())).decode("ascii")

    def open(self, sealed: str, max_age: int) -> dict[str, Any] | None:
        """The payload, or None for anything tampered, foreign, expired or malformed."""
        try:
            data = self._fernet.decrypt_at_time(sealed.encode("ascii"), max_age, int(self._clock()))
            if data[:1] == b"z":
                inflate = zlib.decompressobj(-15)
                data = inflate.decompress(data[1:], MAX_PLAINTEXT_BYTES)
                if inflate.unconsumed_tail or not inflate.eof:
                    return None
            payload = json.loads(data)
        except (InvalidToken, UnicodeError, ValueError, zlib.error):
            return None
        return payload if isinstance(payload, dict) else None


class TokenTooLarge(ValueError):
    """The provider's token does not fit in the cookies a browser sends along with every request."""

    code = "token_too_large"

    def __init__(self, size: int) -> None:
        super().__init__(f"the provider's token is too large for a cookie: {size} bytes sealed, at most "
                         f"{MAX_TOKEN_COOKIES_BYTES} fit")
        self.size = size
        self.limit = MAX_TOKEN_COOKIES_BYTES


@dataclass(frozen=True)
class TokenSession:
    provider: str
    access_token: str
    expires_at: float | None
    auth_time: float  # when the user signed in: GATEWAY_SESSION_MAX_AGE counts from here, across refreshes


class TokenCookie:
    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time,
                 domain: str | None = None) -> None:
        self.sealer = sealer
        self.secure = https
        # __Host-: only sent to this exact host, Secure, Path=/ — browsers enforce it on https. Chunk
        # cookies are named after it ("__Host-gateway_token.1"), so they carry the prefix too.
        # With GATEWAY_COOKIE_DOMAIN the cookie goes to sibling hosts too (forward-auth), which __Host-
        # forbids: __Secure- then still pins it to https.
        self.domain = domain
        if https:
            self.name = "__Secure-gateway_token" if domain else "__Host-gateway_token"
        else:
            self.name = "gateway_token"
        self.max_age = max_age
        self._clock = clock

    def chunk_name(self, index: int) -> str:
        return self.name if index == 0 else f"{self.name}.{index}"

    def raw(self, conn: HTTPConnection) -> str | None:
        """The sealed value, reassembled from its chunks; None when absent or a chunk is missing."""
        first = conn.cookies.get(self.name)
        if not first:
            return None
        count, split, head = first.partition(":")  # Fernet's alphabet has no ':'
        if not split:
            return first
        if not (count.isascii() and count.isdigit()) or not 2 <= int(count) <= MAX_CHUNKS:
            return None
        parts = [head, *(conn.cookies.get(self.chunk_name(i), "") for i in range(1, int(count)))]
        return "".join(parts) if all(parts) else None

    def read(self, conn: HTTPConnection) -> TokenSession | None:
        raw = self.raw(conn)
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
        """The sealed value and its Max-Age: the earlier of the token's expiry and the session limit.
        Raises TokenTooLarge when even compressed it exceeds what the cookies may carry."""
        now = self._clock()
        max_age = max(0, int(session.auth_time + self.max_age - now))
        if session.expires_at is not None:
            max_age = max(0, min(max_age, int(session.expires_at - now)))
        payload = {"p": session.provider, "t": session.access_token, "e": session.expires_at,
                   "a": session.auth_time}
        value = self.sealer.seal(payload)
        if len(value) + len(self.name) > MAX_COOKIE_BYTES:
            value = self.sealer.seal(payload, compress=True)
            chunks = -(-len(value) // CHUNK_BYTES)
            if len(value) + chunks * (len(self.name) + 8) > MAX_TOKEN_COOKIES_BYTES:
                raise TokenTooLarge(len(value))
        return value, max_age

    def chunks(self, value: str) -> list[str]:
        """Cookie values: the sealed value itself when it fits, else "<count>:<first chunk>", chunk 2, ..."""
        if len(value) + len(self.name) <= MAX_COOKIE_BYTES:
            return [value]
        parts = [value[i:i + CHUNK_BYTES] for i in range(0, len(value), CHUNK_BYTES)]
        parts[0] = f"{len(parts)}:{parts[0]}"
        return parts

    def set(self, response: Response, session: TokenSession, conn: HTTPConnection | None = None) -> None:
        """Set the cookie(s); with the request (`conn`), also expire chunks a bigger token left behind."""
        value, max_age = self.seal(session)
        parts = self.chunks(value)
        for index, part in enumerate(parts):
            response.set_cookie(self.chunk_name(index), part, max_age=max_age, path="/", domain=self.domain,
                                secure=self.secure, httponly=True, samesite="lax")
        if conn is not None:
            for index in range(len(parts), MAX_CHUNKS):
                if self.chunk_name(index) in conn.cookies:
                    self._delete(response, self.chunk_name(index))

    def clear(self, response: Response) -> None:
        for index in range(MAX_CHUNKS):
            self._delete(response, self.chunk_name(index))

    def _delete(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", domain=self.domain, secure=self.secure, httponly=True,
                               samesite="lax")


@dataclass(frozen=True)
class RefreshSession:
    provider: str
    refresh_token: str
    auth_time: float


class _PathCookie:
    """One sealed token of a sign-in, sent only to the one route that needs it (Path) and never to
    scripts. __Host- requires Path=/, so these carry __Secure-, which still pins them to https."""

    BASE = ""
    PATH = "/"
    KEY = ""  # the token's key in the sealed payload
    SAMESITE: Literal["lax", "strict"] = "strict"

    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time) -> None:
        self.sealer = sealer
        self.secure = https
        self.name = f"__Secure-{self.BASE}" if https else self.BASE
        self.max_age = max_age
        self._clock = clock

    def _open(self, conn: HTTPConnection) -> tuple[str, str, float] | None:
        raw = conn.cookies.get(self.name)
        payload = self.sealer.open(raw, self.max_age) if raw else None
        if payload is None:
            return None
        provider, token, auth_time = payload.get("p"), payload.get(self.KEY), payload.get("a")
        if not isinstance(provider, str) or not isinstance(token, str) or not isinstance(auth_time, int | float):
            return None
        if auth_time + self.max_age <= self._clock():
            return None
        return provider, token, auth_time

    def _set(self, response: Response, provider: str, token: str, auth_time: float) -> bool:
        value = self.sealer.seal({"p": provider, self.KEY: token, "a": auth_time})
        if len(value) + len(self.name) > MAX_COOKIE_BYTES:
            return False
        max_age = max(0, int(auth_time + self.max_age - self._clock()))
        response.set_cookie(self.name, value, max_age=max_age, path=self.PATH, secure=self.secure, httponly=True,
                            samesite=self.SAMESITE)
        return True

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path=self.PATH, secure=self.secure, httponly=True, samesite=self.SAMESITE)


class RefreshCookie(_PathCookie):
    """The refresh token, sent only to POST /auth/refresh."""

    BASE = "gateway_refresh"
    PATH = "/auth/refresh"
    KEY = "r"
    SAMESITE = "strict"

    def read(self, conn: HTTPConnection) -> RefreshSession | None:
        opened = self._open(conn)
        return RefreshSession(*opened) if opened else None

    def set(self, response: Response, session: RefreshSession) -> bool:
        """False (and nothing set) when the refresh token is too big to keep in a cookie."""
        return self._set(response, session.provider, session.refresh_token, session.auth_time)


class RevokeCookie(RefreshCookie):
    """A copy of the refresh token sent only to POST /logout, which revokes it (RFC 7009): the other copy
    goes only to /auth/refresh, and no Path covers both routes but "/". Rewritten at every refresh."""

    BASE = "gateway_revoke"
    PATH = "/logout"


@dataclass(frozen=True)
class IdTokenSession:
    provider: str
    id_token: str
    auth_time: float


class IdTokenCookie(_PathCookie):
    """The ID token, sent only to POST /logout: the provider's end-session endpoint takes it as
    `id_token_hint`. Lax like the token cookie: the logout form posts from our own pages."""

    BASE = "gateway_idt"
    PATH = "/logout"
    KEY = "i"
    SAMESITE = "lax"

    def read(self, conn: HTTPConnection) -> IdTokenSession | None:
        opened = self._open(conn)
        return IdTokenSession(*opened) if opened else None

    def set(self, response: Response, session: IdTokenSession) -> bool:
        """False (and nothing set) when the ID token is too big: logout then names the client instead."""
        return self._set(response, session.provider, session.id_token, session.auth_time)
