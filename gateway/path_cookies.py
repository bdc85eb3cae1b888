"""The sign-in's cookies that go to one route only: the refresh token (POST /auth/refresh), and for POST
/logout a copy of it (to revoke) and the ID token (`id_token_hint`).

A Path other than / rules out `__Host-`, so these are `__Secure-` on https, which any sibling host may set
with `Domain=<parent>` ("cookie tossing"). Each therefore seals the sign-in's session id, and is read only
together with the `__Host-` session cookie holding the same id (gateway.cookies.SessionCookie): a tossed
one, sealed for the attacker's own sign-in, reads as no cookie. (Moving them to Path=/ instead would send
two more tokens with every request and the chat socket's handshake, past what browsers keep in one line.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response

from gateway.cookies import MAX_COOKIE_BYTES, same_session
from gateway.sealing import Sealer


@dataclass(frozen=True)
class RefreshSession:
    provider: str
    refresh_token: str
    auth_time: float
    session_id: str


@dataclass(frozen=True)
class IdTokenSession:
    provider: str
    id_token: str
    auth_time: float
    session_id: str


class _PathCookie:
    """One sealed token of a sign-in, sent only to the one route that needs it (Path) and never to
    scripts, bound to the sign-in's session id."""

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

    def _open(self, conn: HTTPConnection, session_id: str | None) -> tuple[str, str, float, str] | None:
        """(provider, token, auth_time, session id), or None: absent, not ours, expired, or not of the
        sign-in `session_id` names (the session cookie's)."""
        raw = conn.cookies.get(self.name)
        payload = self.sealer.open(raw, self.max_age) if raw and session_id else None
        if payload is None:
            return None
        provider, token, auth_time = payload.get("p"), payload.get(self.KEY), payload.get("a")
        sealed_id = payload.get("s")
        if not isinstance(provider, str) or not isinstance(token, str) or not isinstance(auth_time, int | float) \
                or not isinstance(sealed_id, str) or not same_session(session_id, sealed_id) or not token:
            return None
        if auth_time + self.max_age <= self._clock():
            return None
        return provider, token, auth_time, sealed_id

    def _set(self, response: Response, provider: str, token: str, auth_time: float, session_id: str) -> bool:
        value = self.sealer.seal({"p": provider, self.KEY: token, "a": auth_time, "s": session_id})
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

    def read(self, conn: HTTPConnection, session_id: str | None) -> RefreshSession | None:
        opened = self._open(conn, session_id)
        return RefreshSession(*opened) if opened else None

    def set(self, response: Response, session: RefreshSession) -> bool:
        """False (and nothing set) when the refresh token is too big to keep in a cookie."""
        return self._set(response, session.provider, session.refresh_token, session.auth_time, session.session_id)


class RevokeCookie(RefreshCookie):
    """A copy of the refresh token sent only to POST /logout, which revokes it (RFC 7009): the other copy
    goes only to /auth/refresh, and no Path covers both routes but "/". Rewritten at every refresh."""

    BASE = "gateway_revoke"
    PATH = "/logout"


class IdTokenCookie(_PathCookie):
    """The ID token, sent only to POST /logout: the provider's end-session endpoint takes it as
    `id_token_hint`. Lax like the token cookie: the logout form posts from our own pages."""

    BASE = "gateway_idt"
    PATH = "/logout"
    KEY = "i"
    SAMESITE = "lax"

    def read(self, conn: HTTPConnection, session_id: str | None) -> IdTokenSession | None:
        opened = self._open(conn, session_id)
        return IdTokenSession(*opened) if opened else None

    def set(self, response: Response, session: IdTokenSession) -> bool:
        """False (and nothing set) when the ID token is too big: logout then names the client instead."""
        return self._set(response, session.provider, session.id_token, session.auth_time, session.session_id)
