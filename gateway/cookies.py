"""The token cookie and the session cookie that anchors a sign-in: sealed with AEAD, read, set, cleared.

Sealing (keys from GATEWAY_SECRET_KEYS through HKDF, one per purpose; rotation) is gateway.sealing's.

A token too big for one cookie is compressed and split over numbered chunk cookies (`gateway_token`
holds the count and the first chunk, `gateway_token.1` the next); the seal covers the whole value, so a
missing, stale or tampered chunk reads as no cookie at all.

Every sign-in gets a random session id, kept in the session cookie (`__Host-` on https: no sibling host
can set it) and sealed into each of the sign-in's other cookies. A cookie whose id differs from the session
cookie's was tossed in from elsewhere (a sibling host may set any name but `__Host-` ones) and is ignored.
The path-scoped cookies (gateway.path_cookies) are always checked so; the token cookie only when
GATEWAY_COOKIE_DOMAIN makes it `__Secure-`, since a `__Host-` one cannot be tossed.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import Response

from gateway.sealing import Sealer
from gateway.unsealed import Unsealed

MAX_COOKIE_BYTES = 4000  # browsers keep at least 4096 bytes per cookie, name and attributes included
# Browsers send every cookie in one Cookie header line, and the WebSocket handshake parser (websockets)
# answers 431 to a line over 8,192 bytes: the token's cookies together stay under this, leaving room for
# a few others. A token that does not fit fails at sign-in, not at every chat connect.
MAX_TOKEN_COOKIES_BYTES = 7168
CHUNK_BYTES = MAX_COOKIE_BYTES - 64  # one chunk's value; its name is short
MAX_CHUNKS = -(-MAX_TOKEN_COOKIES_BYTES // CHUNK_BYTES)


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
    session_id: str = ""  # the sign-in's, as in the session cookie; "" in cookies sealed before there was one
    sid: str = ""  # the provider's session (the ID token's `sid`): a back-channel logout names it


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def same_session(expected: str | None, sealed: str) -> bool:
    return bool(expected) and bool(sealed) and hmac.compare_digest(expected or "", sealed)


# What a provider's `sid` or `sub` may be to be kept in a cookie: printable ASCII, bounded (OpenID Connect
# gives no alphabet; every provider we know uses ids, UUIDs or base64url).
PROVIDER_ID = re.compile(r"\A[\x21-\x7e]{1,255}\Z")


def provider_id(value: object) -> str:
    """`value` when it is a `sid` or `sub` we can keep and compare, else "" (none known)."""
    return value if isinstance(value, str) and PROVIDER_ID.fullmatch(value) else ""


@dataclass(frozen=True)
class SignInSession:
    provider: str
    session_id: str
    auth_time: float
    sid: str = ""  # the provider's session id, from the ID token ("" when it sent none)
    subject: str = ""  # the ID token's `sub`: a sign-out everywhere names the user by it


class SessionCookie:
    """The anchor of a sign-in: its session id, sent to every route for as long as the sign-in lasts
    (GATEWAY_SESSION_MAX_AGE from sign-in, unlike the token cookie, which ends with the access token), so
    that POST /auth/refresh and POST /logout can tell the sign-in's own cookies from tossed ones."""

    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time) -> None:
        self.sealer = sealer
        self.secure = https
        self.name = "__Host-gateway_session" if https else "gateway_session"
        self.max_age = max_age
        self._clock = clock

    def read(self, conn: HTTPConnection) -> SignInSession | None:
        raw = conn.cookies.get(self.name)
        payload = self.sealer.open(raw, self.max_age) if raw else None
        if payload is None:
            return None
        provider, session_id, auth_time = payload.get("p"), payload.get("s"), payload.get("a")
        if not isinstance(provider, str) or not isinstance(session_id, str) or not session_id \
                or not isinstance(auth_time, int | float) or auth_time + self.max_age <= self._clock():
            return None
        return SignInSession(provider, session_id, auth_time, provider_id(payload.get("d")),
                             provider_id(payload.get("u")))

    def session_id(self, conn: HTTPConnection) -> str | None:
        session = self.read(conn)
        return session.session_id if session else None

    def set(self, response: Response, session: SignInSession) -> None:
        payload: dict[str, Any] = {"p": session.provider, "s": session.session_id, "a": session.auth_time}
        if session.sid:
            payload["d"] = session.sid
        if session.subject:
            payload["u"] = session.subject
        value = self.sealer.seal(payload)
        max_age = max(0, int(session.auth_time + self.max_age - self._clock()))
        response.set_cookie(self.name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite="lax")

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="lax")


class TokenCookie:
    def __init__(self, sealer: Sealer, https: bool, max_age: int, clock: Callable[[], float] = time.time,
                 domain: str | None = None, anchor: SessionCookie | None = None) -> None:
        self.sealer = sealer
        self.secure = https
        # __Host-: only sent to this exact host, Secure, Path=/ — browsers enforce it on https. Chunk
        # cookies are named after it ("__Host-gateway_token.1"), so they carry the prefix too.
        # With GATEWAY_COOKIE_DOMAIN the cookie goes to sibling hosts too (forward-auth), which __Host-
        # forbids: __Secure- then still pins it to https, and any sibling host can set it: such a cookie
        # must carry the session id of the `anchor` (the session cookie) to count.
        self.domain = domain
        self.anchor = anchor
        if https:
            self.name = "__Secure-gateway_token" if domain else "__Host-gateway_token"
        else:
            self.name = "gateway_token"
        self.max_age = max_age
        self._clock = clock
        self.unsealed: Unsealed[TokenSession] = Unsealed()

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

    def read(self, conn: HTTPConnection, *, sibling: bool = False) -> TokenSession | None:
        """The sign-in in the cookie, or None. A domain cookie counts only with the session cookie of its
        sign-in; `sibling`: a forward-auth check for another host, which never sees the session cookie
        (host-only): then a missing one is accepted, a different one still is not."""
        session = self._open(conn)
        if session is None or self.domain is None:
            return session
        anchored = self.anchor.session_id(conn) if self.anchor else None
        if same_session(anchored, session.session_id) or (sibling and anchored is None and self.anchor):
            return session
        return None

    def forget(self, conn: HTTPConnection) -> None:
        """This request's cookie is signed out: drop it from the unsealed cache."""
        raw = self.raw(conn)
        if raw:
            self.unsealed.forget(raw)

    def _open(self, conn: HTTPConnection) -> TokenSession | None:
        raw = self.raw(conn)
        if not raw:
            return None
        kept = self.unsealed.get(raw)
        if kept is not None:
            sealed_at, cached = kept
            now = self._clock()
            # What Fernet's own check and the one below would say now (a seal from the future never got in).
            if sealed_at + self.max_age < now or cached.auth_time + self.max_age <= now:
                self.unsealed.forget(raw)
                return None
            return cached
        session = self._unseal(raw)
        if session is not None:
            self.unsealed.put(raw, self.sealer.sealed_at(raw), session)
        return session

    def _unseal(self, raw: str) -> TokenSession | None:
        payload = self.sealer.open(raw, self.max_age)
        if payload is None:
            return None
        provider, token, expires_at, auth_time = payload.get("p"), payload.get("t"), payload.get("e"), payload.get("a")
        session_id = payload.get("s", "")
        if not isinstance(provider, str) or not isinstance(token, str) or not isinstance(auth_time, int | float) \
                or not isinstance(session_id, str) or not token or not provider:
            return None
        if expires_at is not None and not isinstance(expires_at, int | float):
            return None
        if auth_time + self.max_age <= self._clock():
            return None
        return TokenSession(provider, token, expires_at, auth_time, session_id, provider_id(payload.get("d")))

    def seal(self, session: TokenSession) -> tuple[str, int]:
        """The sealed value and its Max-Age: the earlier of the token's expiry and the session limit.
        Raises TokenTooLarge when even compressed it exceeds what the cookies may carry."""
        now = self._clock()
        max_age = max(0, int(session.auth_time + self.max_age - now))
        if session.expires_at is not None:
            max_age = max(0, min(max_age, int(session.expires_at - now)))
        payload: dict[str, Any] = {"p": session.provider, "t": session.access_token, "e": session.expires_at,
                                   "a": session.auth_time}
        if session.session_id:
            payload["s"] = session.session_id
        if session.sid:
            payload["d"] = session.sid
        value = self.sealer.seal(payload)
        if len(value) + len(self.name) > MAX_COOKIE_BYTES:
            value = self.sealer.seal(payload, compress=True)
            chunks = -(-len(value) // CHUNK_BYTES)
            if len(value) + chunks * (len(self.name) + 8) > MAX_TOKEN_COOKIES_BYTES:
                raise TokenTooLarge(len(value))
        return value, max_age

    def open_sealed(self, sealed: str) -> TokenSession | None:
        """A value as `seal` makes it (a refresh's, sent to the sign-in's sockets), or None."""
        return self._unseal(sealed)

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
