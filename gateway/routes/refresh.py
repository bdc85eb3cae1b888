"""POST /auth/refresh: a new access token from the sealed refresh token, for the gateway's own page. The
open sockets of that sign-in, on every instance, take the new token and expiry and stay open."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from gateway.app import Gateway
from gateway.cookies import SignInSession, TokenSession, TokenTooLarge, same_session
from gateway.errors import CrossSiteRequest, ProviderUnavailable
from gateway.path_cookies import RefreshSession
from gateway.routes.auth import clear_cookies, keep_tokens
from gateway.routes.pages import gateway_of
from gateway.security import origin_of, require_same_origin

log = logging.getLogger("gateway.auth")
router = APIRouter()


def _refresh_refused(gateway: Gateway, error: str) -> Response:
    response = JSONResponse({"error": error}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    clear_cookies(gateway, response)
    return response


def _ended(gateway: Gateway, kept: RefreshSession, anchor: SignInSession) -> bool:
    """Whether the provider ended this sign-in (back- or front-channel logout), or a sign-out everywhere did."""
    authenticator = gateway.authenticator
    if anchor.sid and authenticator.provider_session_ended(kept.provider, anchor.sid):
        return True
    return bool(anchor.subject) and authenticator.signed_out_everywhere(f"{kept.provider}:{anchor.subject}",
                                                                         kept.auth_time)


@router.post("/auth/refresh")
async def refresh(request: Request) -> Response:
    """A new access token from the sealed refresh token, for the gateway's own page only (403 otherwise):
    204 with fresh cookies; 401 without a refresh cookie of this sign-in (one tossed in by a sibling host
    is none), after its logout (here or at the provider), or when the provider says no (cookies cleared);
    503 when it cannot answer."""
    gateway = gateway_of(request)
    try:
        require_same_origin(request, origin_of(gateway.settings.public_url))
    except CrossSiteRequest as exc:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=403)
    anchor = gateway.session_cookie.read(request)
    kept = gateway.refresh_cookie.read(request, anchor.session_id if anchor else None)
    provider = gateway.providers.get(kept.provider) if kept else None
    if kept is None or provider is None or anchor is None or not same_session(anchor.session_id, kept.session_id):
        return JSONResponse({"error": "no_refresh_token"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    if await gateway.authenticator.session_ended(kept.session_id) or _ended(gateway, kept, anchor):
        log.info("refresh refused: that sign-in was signed out")
        return _refresh_refused(gateway, "signed_out")
    try:
        await provider.metadata()
        token: dict[str, Any] = await provider.oauth.fetch_access_token(
            grant_type="refresh_token", refresh_token=kept.refresh_token)
        if "access_token" not in token:
            raise OAuthError("invalid_grant", "no access token in the refresh answer")
    except OAuthError as exc:
        log.info("refresh at %s refused: %s", kept.provider, exc.error)
        return _refresh_refused(gateway, "refresh_refused")
    except (httpx.HTTPError, ProviderUnavailable, AuthlibBaseError, ValueError) as exc:
        log.warning("refresh at %s failed: %s", kept.provider, type(exc).__name__)
        return JSONResponse({"error": "provider_unavailable"}, status_code=503, headers={"Retry-After": "5"})
    response = Response(status_code=204)
    token.setdefault("refresh_token", kept.refresh_token)  # providers that do not rotate keep the old one
    sign_in = SignInSession(kept.provider, kept.session_id, kept.auth_time, anchor.sid, anchor.subject)
    try:
        session = keep_tokens(gateway, request, response, token, sign_in)
        sealed, _ = gateway.token_cookie.seal(session)
    except TokenTooLarge as exc:
        log.warning("refresh at %s unusable: %s", kept.provider, exc)
        return _refresh_refused(gateway, exc.code)
    # The sign-in's open sockets take the new token (sealed, as in the cookie) on whichever instance they are.
    await gateway.hub.refreshed(kept.session_id, sealed)
    return response


def sealed_session(gateway: Gateway, sealed: str, session_id: str) -> TokenSession | None:
    """A refresh's token cookie as a socket of sign-in `session_id` receives it; None if it is not that."""
    session = gateway.token_cookie.open_sealed(sealed)
    if session is None or not same_session(session_id, session.session_id):
        return None
    return session
