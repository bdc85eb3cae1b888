"""Sign-in (OAuth code flow with PKCE through authlib), the callback, logout and the session probe."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from authlib.common.errors import AuthlibBaseError
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadData
from joserfc.errors import JoseError

from gateway.cookies import TokenSession
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
        access_token = token["access_token"]
        if "openid" in provider.settings.scopes and not token.get("userinfo"):
            raise ValueError("the provider returned no ID token")
        expires_at = token.get("expires_at")
        session = TokenSession(name, str(access_token), float(expires_at) if expires_at else None)
        target = request.session.pop("next", None) or "/chat"
        response = RedirectResponse(target, status_code=303)
        gateway.token_cookie.set(response, session)
    except CALLBACK_ERRORS as exc:
        # Only the error's type and code: its text may quote what the provider sent.
        log.warning("sign-in at %s failed: %s %s", name, type(exc).__name__, getattr(exc, "error", ""))
        request.session.pop("next", None)
        return _sign_in_failed(request, "The sign-in could not be completed (it may have expired or been "
                                        "started in another window).")
    log.info("signed in at %s", name)
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
