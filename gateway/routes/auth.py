"""Sign-in (OAuth code flow with PKCE through authlib), the callback, logout and the session probe."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadData
from joserfc.errors import JoseError

from gateway.app import Gateway
from gateway.cookies import RefreshSession, TokenSession
from gateway.errors import CredentialError, ProviderUnavailable
from gateway.redirects import safe_next
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import authenticate

log = logging.getLogger("gateway.auth")
router = APIRouter()

# What a failed callback can raise besides OAuthError: transport errors, bad JSON, JOSE claim errors.
CALLBACK_ERRORS = (AuthlibBaseError, JoseError, httpx.HTTPError, ProviderUnavailable, ValueError, KeyError,
                   TypeError)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/chat", status_code=303)


@router.get("/login")
async def login_page(request: Request, next: str | None = None) -> Response:
    gateway = gateway_of(request)
    target = quote(safe_next(next, gateway.settings.allowed_redirect_domains), safe="")
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
    request.session["next"] = safe_next(next, gateway.settings.allowed_redirect_domains)
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
        token: dict[str, Any] = await provider.oauth.authorize_access_token(request)
        if not isinstance(token.get("access_token"), str):
            raise ValueError("the provider returned no access token")
        if provider.preset.discovery and "openid" in (provider.settings.scopes or []) and not token.get("userinfo"):
            raise ValueError("the provider returned no ID token")
        target = request.session.pop("next", None) or "/chat"
        response = RedirectResponse(target, status_code=303)
        _keep_tokens(gateway, response, name, token, auth_time=time.time())
    except CALLBACK_ERRORS as exc:
        # Only the error's type and code: its text may quote what the provider sent.
        log.warning("sign-in at %s failed: %s %s", name, type(exc).__name__, getattr(exc, "error", ""))
        request.session.pop("next", None)
        return _sign_in_failed(request, "The sign-in could not be completed (it may have expired or been "
                                        "started in another window).")
    log.info("signed in at %s", name)
    return response


def _keep_tokens(gateway: Gateway, response: Response, provider: str, token: dict[str, Any],
                 auth_time: float) -> None:
    """Seal the access token (and the refresh token, when there is one) into their cookies."""
    expires_at = token.get("expires_at")
    gateway.token_cookie.set(response, TokenSession(provider, str(token["access_token"]),
                                                    float(expires_at) if expires_at else None, auth_time))
    refresh_token = token.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        if not gateway.refresh_cookie.set(response, RefreshSession(provider, refresh_token, auth_time)):
            log.warning("refresh token from %s too large for a cookie; the session ends with the access token",
                        provider)


@router.post("/auth/refresh")
async def refresh(request: Request) -> Response:
    """A new access token from the sealed refresh token: 204 with fresh cookies, 401 when the provider
    says no (cookies cleared), 503 when it cannot answer."""
    gateway = gateway_of(request)
    kept = gateway.refresh_cookie.read(request)
    provider = gateway.providers.get(kept.provider) if kept else None
    if kept is None or provider is None:
        return JSONResponse({"error": "no_refresh_token"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    try:
        await provider.metadata()
        token: dict[str, Any] = await provider.oauth.fetch_access_token(
            grant_type="refresh_token", refresh_token=kept.refresh_token)
        if "access_token" not in token:
            raise OAuthError("invalid_grant", "no access token in the refresh answer")
    except OAuthError as exc:
        log.info("refresh at %s refused: %s", kept.provider, exc.error)
        response: Response = JSONResponse({"error": "refresh_refused"}, status_code=401,
                                          headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
        gateway.token_cookie.clear(response)
        gateway.refresh_cookie.clear(response)
        return response
    except (httpx.HTTPError, ProviderUnavailable, AuthlibBaseError, ValueError) as exc:
        log.warning("refresh at %s failed: %s", kept.provider, type(exc).__name__)
        return JSONResponse({"error": "provider_unavailable"}, status_code=503, headers={"Retry-After": "5"})
    response = Response(status_code=204)
    token.setdefault("refresh_token", kept.refresh_token)  # providers that do not rotate keep the old one
    _keep_tokens(gateway, response, kept.provider, token, kept.auth_time)
    return response


def csrf_token(request: Request) -> str:
    """Bound to this browser's token cookie: a form from another session or site cannot log anyone out."""
    gateway = gateway_of(request)
    raw = request.cookies.get(gateway.token_cookie.name, "")
    return gateway.csrf.dumps(hashlib.sha256(raw.encode()).hexdigest()[:32])


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    gateway = gateway_of(request)
    raw = request.cookies.get(gateway.token_cookie.name, "")
    try:
        bound = gateway.csrf.loads(csrf, max_age=gateway.settings.session_max_age)
    except BadData:
        bound = None
    if raw and bound != hashlib.sha256(raw.encode()).hexdigest()[:32]:
        return error_page(request, 400, "Logout refused",
                          "The logout form was stale or came from elsewhere. Reload the chat and try again.")
    response = RedirectResponse("/login", status_code=303)
    gateway.token_cookie.clear(response)
    gateway.refresh_cookie.clear(response)
    return response


@router.get("/auth/session")
async def session_status(request: Request) -> JSONResponse:
    """What the page asks after a failed connect: browsers never see a handshake's HTTP status."""
    gateway = gateway_of(request)
    try:
        principal = await authenticate(request, gateway)
    except ProviderUnavailable as exc:
        return JSONResponse({"authenticated": False, "user": None, "expires_at": None,
                             "provider_status": "unavailable", "reason": exc.code},
                            headers={"Retry-After": str(exc.retry_after)})
    except CredentialError as exc:
        return JSONResponse({"authenticated": False, "user": None, "expires_at": None,
                             "provider_status": "ok", "reason": exc.code})
    return JSONResponse({
        "authenticated": True,
        "user": {**principal.public(), "email": principal.email, "provider": principal.provider},
        "expires_at": principal.expires_at,
        "provider_status": "ok",
        "reason": None,
    })
