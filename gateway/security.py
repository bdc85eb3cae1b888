"""Credentials on a request (docs/sessions.md): where the token comes from, the Origin policy, and the
FastAPI dependency that turns a request into a Principal or a proper refusal."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from gateway.authenticator import Credentials
from gateway.chat.sign_ins import SignIn
from gateway.cookies import TokenSession
from gateway.errors import BadOrigin, CredentialError, CrossSiteRequest, InvalidRequest, MissingCredentials
from gateway.tokens import Principal, check_token_syntax

if TYPE_CHECKING:
    from gateway.app import Gateway

CHAT_PROTOCOL = "gateway.chat.v1"
K8S_TOKEN_PREFIX = "base64url.bearer.authorization.k8s.io."  # noqa: S105 - a prefix, not a secret
# Sent by the chat page's fetch() with POST /auth/refresh. Another origin cannot add a header to a
# request without a CORS preflight, which the gateway never grants; a form cannot add one at all.
REFRESH_HEADER = "X-Gateway-Refresh"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # RFC 9110 §9.2.1 (TRACE is never served)

def parse_authorization(value: str) -> str:
    """`Bearer <token68>` → the token; anything else → InvalidRequest (400)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidRequest("Authorization header must use the Bearer scheme")
    token = rest.strip(" ")
    if not token or " " in token:
        raise InvalidRequest("Authorization header must be 'Bearer <token>'")
    return check_token_syntax(token)


def parse_subprotocols(value: str) -> str | None:
    """The token carried in a `base64url.bearer.authorization.k8s.io.<token>` subprotocol entry."""
    for entry in value.split(","):
        entry = entry.strip()
        if entry.startswith(K8S_TOKEN_PREFIX):
            encoded = entry[len(K8S_TOKEN_PREFIX):]
            try:
                # validate=True: the lenient default silently drops characters outside the alphabet.
                raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
                token = raw.decode("ascii")
            except (binascii.Error, ValueError):
                raise InvalidRequest("subprotocol token is not base64url of an ASCII token") from None
            return check_token_syntax(token)
    return None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(origin: str | None, allowed: frozenset[str], *, required: bool) -> None:
    """Exact scheme+host+port match; `null`, prefixes and suffixes never pass."""
    if origin is None:
        if required:
            raise BadOrigin("a browser WebSocket must send an Origin header")
        return
    if origin.lower() not in allowed:
        raise BadOrigin("this Origin may not open the chat socket")


def require_same_origin(conn: HTTPConnection, public_origin: str) -> None:
    """For requests only our own pages make: the page's exact Origin and its header, or CrossSiteRequest
    (403). A sibling host is the same site (SameSite lets its cookies and posts through), not the same origin."""
    origin = conn.headers.get("origin")
    if origin is None or origin.lower() != public_origin:
        raise CrossSiteRequest(f"only the gateway's own pages may do this: send Origin: {public_origin}")
    if conn.headers.get(REFRESH_HEADER) != "1":
        raise CrossSiteRequest(f"only the gateway's own pages may do this: send {REFRESH_HEADER}: 1")


def extract_credentials(conn: HTTPConnection, gateway: Gateway, sibling: bool = False) -> Credentials | None:
    """`sibling`: a forward-auth check for another host of GATEWAY_COOKIE_DOMAIN (TokenCookie.read)."""
    authorization = conn.headers.get("authorization")
    if authorization is not None:
        # A header that is present but malformed is an error: never fall back to the cookie.
        return Credentials(parse_authorization(authorization), "header")
    if conn.scope["type"] == "websocket":
        offered = conn.headers.get("sec-websocket-protocol")
        token = parse_subprotocols(offered) if offered else None
        if token is not None:
            return Credentials(token, "subprotocol")
    session = gateway.token_cookie.read(conn, sibling=sibling)
    if session is not None:
        return cookie_credentials(session, gateway.settings.session_max_age)
    return None


def cookie_credentials(session: TokenSession, session_max_age: int) -> Credentials:
    """The credentials a token cookie holds (read from a request, or handed over by a refresh)."""
    return Credentials(session.access_token, "cookie", session.provider, session.expires_at,
                       session.auth_time + session_max_age, session.session_id or None, session.sid or None)


def sign_in_of(credentials: Credentials, session_max_age: int) -> SignIn | None:
    """The browser sign-in behind a cookie socket (what a logout at the provider or a refresh reaches)."""
    if credentials.source != "cookie" or not credentials.session_id or credentials.provider is None \
            or credentials.session_ends is None:
        return None
    return SignIn(credentials.provider, credentials.session_id, credentials.sid or "",
                  credentials.session_ends - session_max_age)


async def identify(conn: HTTPConnection, gateway: Gateway, sibling: bool = False) -> Principal:
    """Who is behind this request (the token validated), not yet whether they may come in."""
    credentials = extract_credentials(conn, gateway, sibling)
    if credentials is None:
        raise MissingCredentials("sign in, or send Authorization: Bearer <token>")
    if conn.scope["type"] == "websocket":
        # Cookies ride along on cross-site requests (CSWSH): with a cookie, Origin is mandatory.
        check_origin(conn.headers.get("origin"), gateway.allowed_origins, required=credentials.source == "cookie")
    elif credentials.source == "cookie" and conn.scope["method"] not in SAFE_METHODS:
        # A sibling host is the same site: SameSite lets its forms post our cookie. Browsers send Origin
        # with every POST, so a cookie-borne one must carry ours (programs send a header token instead).
        origin = conn.headers.get("origin")
        if origin is None or origin.lower() not in gateway.allowed_origins:
            raise CrossSiteRequest(f"a {conn.scope['method']} with the sign-in cookie must come from an allowed "
                                   "Origin (GATEWAY_PUBLIC_URL, GATEWAY_ALLOWED_ORIGINS)")
    client = conn.client.host if conn.client else None
    principal = await gateway.authenticator.principal(credentials, client)
    conn.state.credentials = credentials  # an open socket re-checks them (gateway.chat.watch)
    return principal


async def authenticate(conn: HTTPConnection, gateway: Gateway, room: str | None = None,
                       sibling: bool = False) -> Principal:
    """The Principal behind this request, allowed in (GATEWAY_ALLOWED_*, scopes, `room`'s rule), or a
    CredentialError saying why not: Forbidden (403) for a valid token that is not allowed."""
    principal = await identify(conn, gateway, sibling)
    gateway.access.check(principal, room)
    return principal


def challenge_headers(error: CredentialError) -> dict[str, str]:
    headers = {}
    if error.challenge:
        headers["WWW-Authenticate"] = error.challenge
    retry_after = getattr(error, "retry_after", None)  # 503 and 429
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def to_http_exception(error: CredentialError) -> HTTPException:
    return HTTPException(status_code=error.status, detail=error.detail, headers=challenge_headers(error) or None)


async def current_principal(conn: HTTPConnection) -> Principal:
    """The dependency for HTTP and WebSocket routes alike: refusals become real HTTP responses,
    on WebSockets too (ASGI denial-response extension), before any accept."""
    gateway = conn.app.state.gateway
    try:
        return await authenticate(conn, gateway)
    except CredentialError as error:
        if conn.scope["type"] == "websocket":
            gateway.metrics.stats.handshake(error.code)
        raise to_http_exception(error) from None


CurrentUser = Annotated[Principal, Depends(current_principal)]
