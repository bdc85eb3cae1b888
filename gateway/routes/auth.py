"""Sign-in (OAuth code flow with PKCE through authlib), the callback, refresh and the session probe."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
from authlib.common.errors import AuthlibBaseError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from joserfc.errors import JoseError

from gateway.access import ROOM_NAME
from gateway.app import Gateway
from gateway.authenticator import Credentials
from gateway.cookies import SignInSession, TokenSession, TokenTooLarge, new_session_id, provider_id
from gateway.errors import (
    CredentialError,
    Forbidden,
    InvalidRequest,
    InvalidToken,
    ProviderUnavailable,
)
from gateway.path_cookies import IdTokenSession, RefreshSession
from gateway.providers import variable_prefix
from gateway.redirects import safe_next
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import identify

log = logging.getLogger("gateway.auth")
router = APIRouter()
root_router = APIRouter()  # `/`: the gateway's own app only (a library user's app has its own home page)

# What a failed callback can raise besides OAuthError: transport errors, bad JSON, JOSE claim errors.
CALLBACK_ERRORS = (AuthlibBaseError, JoseError, httpx.HTTPError, ProviderUnavailable, ValueError, KeyError,
                   TypeError)


@root_router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/chat", status_code=303)


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    gateway = gateway_of(request)
    target = quote(safe_next(next, gateway.settings.allowed_redirect_domains, gateway.home), safe="")
    providers = [{"title": p.title, "href": f"/login/{p.name}?next={target}"} for p in gateway.providers]
    return render(request, "login.html", providers=providers)


@router.get("/login/{name}")
async def login_start(request: Request, name: str, next: str | None = None) -> Response:
    gateway = gateway_of(request)
    provider = gateway.providers.get(name)
    if provider is None:
        return error_page(request, 404, "Unknown provider", "There is no sign-in provider by that name.")
    try:
        await provider.metadata()
    except ProviderUnavailable as exc:
        log.warning("sign-in at %s impossible: %s", name, exc.detail)
        return error_page(request, 503, "Provider unavailable",
                          f"{provider.title} cannot be reached right now. Try again in a moment.",
                          headers={"Retry-After": str(exc.retry_after)})
    request.session["next"] = safe_next(next, gateway.settings.allowed_redirect_domains, gateway.home)
    response: Response = await provider.oauth.authorize_redirect(request, gateway.settings.redirect_uri(name))
    return response


def _sign_in_failed(request: Request, message: str) -> Response:
    return error_page(request, 400, "Sign-in failed", message)


@router.get("/auth/{name}/callback")
async def callback(request: Request, name: str) -> Response:
    gateway = gateway_of(request)
    provider = gateway.providers.get(name)
    if provider is None:
        return _sign_in_failed(request, "This sign-in answer names no configured provider.")
    if "error" in request.query_params:
        log.info("provider %s refused sign-in: %s", name, request.query_params["error"][:64])
        return _sign_in_failed(request, f"{provider.title} did not sign you in.")
    try:
        await provider.metadata()
        provider.check_response_issuer(request.query_params.getlist("iss"))  # RFC 9207, before the exchange
        token: dict[str, Any] = await provider.oauth.authorize_access_token(request)
        if not isinstance(token.get("access_token"), str):
            raise ValueError("the provider returned no access token")
        if provider.preset.discovery and "openid" in (provider.settings.scopes or []) and not token.get("userinfo"):
            raise ValueError("the provider returned no ID token")
        target = request.session.pop("next", None) or gateway.home
        response = RedirectResponse(target, status_code=303)
        keep_tokens(gateway, request, response, token, _sign_in(name, token))
        refusal = await _check_new_token(request, name, token)
        if refusal is not None:
            return refusal
    except TokenTooLarge as exc:
        log.warning("sign-in at %s failed: %s", name, exc)
        request.session.pop("next", None)
        return _sign_in_failed(request, f"{provider.title} issued a token too large for this gateway to keep "
                                        f"({exc.size} bytes sealed, at most {exc.limit}). Ask an administrator "
                                        "to trim the token's claims (group memberships, for example).")
    except CALLBACK_ERRORS as exc:
        # Only the error's type and code: its text may quote what the provider sent.
        log.warning("sign-in at %s failed: %s %s", name, type(exc).__name__, getattr(exc, "error", ""))
        request.session.pop("next", None)
        return _sign_in_failed(request, "The sign-in could not be completed (it may have expired or been "
                                        "started in another window).")
    log.info("signed in at %s", name)
    return response


def _sign_in(name: str, token: dict[str, Any]) -> SignInSession:
    """A new sign-in, with the provider's session (`sid`) and subject from its ID token, checked by authlib:
    a back-channel logout names one of them."""
    claims = token.get("userinfo")
    claims = claims if isinstance(claims, dict) else {}
    return SignInSession(name, new_session_id(), time.time(), provider_id(claims.get("sid")),
                         provider_id(claims.get("sub")))


async def _check_new_token(request: Request, name: str, token: dict[str, Any]) -> Response | None:
    """Validate the fresh access token the way every later request will (and warm the cache). A token
    the configured validation refuses would otherwise loop the browser between /chat and /login."""
    gateway = gateway_of(request)
    expires_at = token.get("expires_at")
    credentials = Credentials(str(token["access_token"]), "cookie", name,
                              float(expires_at) if expires_at else None, time.time() + gateway.settings.session_max_age)
    try:
        await gateway.authenticator.principal(credentials)
    except (InvalidToken, InvalidRequest) as exc:
        log.error("sign-in at %s: the provider's own access token fails this gateway's validation (%s): check "
                  "%s__VALIDATION and __AUDIENCE", name, exc.detail, variable_prefix(name))
        return error_page(request, 400, "Sign-in failed",
                          "The provider signed you in, but its token is not accepted here. This is a configuration "
                          "problem: please tell the administrator.")
    except (Forbidden, ProviderUnavailable):
        # Not allowed: still signed in, so the pages can say as whom (and logout can switch accounts).
        # Provider trouble: cannot judge now; the next request asks again.
        pass
    return None


def keep_tokens(gateway: Gateway, request: Request, response: Response, token: dict[str, Any],
                sign_in: SignInSession) -> TokenSession:
    """Seal the access token, and the refresh and ID tokens when there are some, into their cookies, each
    with the sign-in's session id, which the session cookie holds. Raises TokenTooLarge when the access
    token does not fit."""
    provider, auth_time, session_id = sign_in.provider, sign_in.auth_time, sign_in.session_id
    expires_at = token.get("expires_at")
    session = TokenSession(provider, str(token["access_token"]), float(expires_at) if expires_at else None,
                           auth_time, session_id, sign_in.sid)
    gateway.token_cookie.set(response, session, request)
    gateway.session_cookie.set(response, sign_in)
    refresh_token = token.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        kept = RefreshSession(provider, refresh_token, auth_time, session_id)
        if gateway.refresh_cookie.set(response, kept):
            gateway.revoke_cookie.set(response, kept)
        else:
            log.warning("refresh token from %s too large for a cookie; the session ends with the access token",
                        provider)
    id_token = token.get("id_token")  # a refresh without one keeps the ID token already kept
    if isinstance(id_token, str) and id_token:
        if not gateway.idt_cookie.set(response, IdTokenSession(provider, id_token, auth_time, session_id)):
            log.info("ID token from %s too large for a cookie; logout will name the client instead", provider)
    return session


def clear_cookies(gateway: Gateway, response: Response) -> None:
    gateway.token_cookie.clear(response)
    gateway.session_cookie.clear(response)
    gateway.refresh_cookie.clear(response)
    gateway.revoke_cookie.clear(response)
    gateway.idt_cookie.clear(response)


@router.get("/auth/session")
async def session_status(request: Request, room: str | None = None) -> JSONResponse:
    """What the page asks after a failed connect: browsers never see a handshake's HTTP status.
    A signed-in user who may not come in (GATEWAY_ALLOWED_*, scopes, `?room=`'s rule) is
    `authenticated: true, allowed: false`, with the reason in `reason_text`."""
    gateway = gateway_of(request)
    try:
        principal = await identify(request, gateway)
    except ProviderUnavailable as exc:
        return JSONResponse({"authenticated": False, "allowed": False, "user": None, "expires_at": None,
                             "provider_status": "unavailable", "reason": exc.code, "reason_text": exc.detail},
                            headers={"Retry-After": str(exc.retry_after)})
    except Forbidden as exc:  # a valid token the validator itself refuses (a bot, a provider's scopes)
        return JSONResponse({"authenticated": True, "allowed": False, "user": None, "expires_at": None,
                             "provider_status": "ok", "reason": exc.code, "reason_text": exc.detail})
    except CredentialError as exc:
        return JSONResponse({"authenticated": False, "allowed": False, "user": None, "expires_at": None,
                             "provider_status": "ok", "reason": exc.code, "reason_text": exc.detail})
    refusal: Forbidden | None = None
    try:
        gateway.access.check(principal, room if room is not None and ROOM_NAME.fullmatch(room) else None)
    except Forbidden as exc:
        refusal = exc
    return JSONResponse({
        "authenticated": True,
        "allowed": refusal is None,
        "user": {**principal.public(), "email": principal.email, "provider": principal.provider},
        "expires_at": principal.expires_at,
        "provider_status": "ok",
        "reason": refusal.code if refusal else None,
        "reason_text": refusal.detail if refusal else None,
    })
