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
from starlette.background import BackgroundTask

from gateway.access import ROOM_NAME
from gateway.app import Gateway
from gateway.authenticator import Credentials
from gateway.chat.watch import TOKEN_EXPIRED
from gateway.cookies import IdTokenSession, RefreshSession, TokenSession, TokenTooLarge
from gateway.errors import CredentialError, Forbidden, InvalidRequest, InvalidToken, ProviderUnavailable
from gateway.headers import content_security_policy
from gateway.logout import end_session, revoke_tokens
from gateway.providers import Provider, variable_prefix
from gateway.redirects import safe_next
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import identify

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
        provider.check_response_issuer(request.query_params.getlist("iss"))  # RFC 9207, before the exchange
        token: dict[str, Any] = await provider.oauth.authorize_access_token(request)
        if not isinstance(token.get("access_token"), str):
            raise ValueError("the provider returned no access token")
        if provider.preset.discovery and "openid" in (provider.settings.scopes or []) and not token.get("userinfo"):
            raise ValueError("the provider returned no ID token")
        target = request.session.pop("next", None) or "/chat"
        response = RedirectResponse(target, status_code=303)
        _keep_tokens(gateway, request, response, name, token, auth_time=time.time())
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


def _keep_tokens(gateway: Gateway, request: Request, response: Response, provider: str, token: dict[str, Any],
                 auth_time: float) -> None:
    """Seal the access token, and the refresh and ID tokens when there are some, into their cookies.
    Raises TokenTooLarge when the access token does not fit."""
    expires_at = token.get("expires_at")
    gateway.token_cookie.set(response, TokenSession(provider, str(token["access_token"]),
                                                    float(expires_at) if expires_at else None, auth_time), request)
    refresh_token = token.get("refresh_token")
    if isinstance(refresh_token, str) and refresh_token:
        kept = RefreshSession(provider, refresh_token, auth_time)
        if gateway.refresh_cookie.set(response, kept):
            gateway.revoke_cookie.set(response, kept)
        else:
            log.warning("refresh token from %s too large for a cookie; the session ends with the access token",
                        provider)
    id_token = token.get("id_token")  # a refresh without one keeps the ID token already kept
    if isinstance(id_token, str) and id_token:
        if not gateway.idt_cookie.set(response, IdTokenSession(provider, id_token, auth_time)):
            log.info("ID token from %s too large for a cookie; logout will name the client instead", provider)


def _clear_cookies(gateway: Gateway, response: Response) -> None:
    gateway.token_cookie.clear(response)
    gateway.refresh_cookie.clear(response)
    gateway.revoke_cookie.clear(response)
    gateway.idt_cookie.clear(response)


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
        _clear_cookies(gateway, response)
        return response
    except (httpx.HTTPError, ProviderUnavailable, AuthlibBaseError, ValueError) as exc:
        log.warning("refresh at %s failed: %s", kept.provider, type(exc).__name__)
        return JSONResponse({"error": "provider_unavailable"}, status_code=503, headers={"Retry-After": "5"})
    response = Response(status_code=204)
    token.setdefault("refresh_token", kept.refresh_token)  # providers that do not rotate keep the old one
    try:
        _keep_tokens(gateway, request, response, kept.provider, token, kept.auth_time)
    except TokenTooLarge as exc:
        log.warning("refresh at %s unusable: %s", kept.provider, exc)
        response = JSONResponse({"error": exc.code}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
        _clear_cookies(gateway, response)
    return response


def _binding(session: TokenSession | RefreshSession | IdTokenSession | None) -> str | None:
    """What a logout form is bound to: this browser's sign-in (provider and time), sealed in each of its
    cookies, unchanged by refreshes and readable by no one else."""
    if session is None:
        return None
    return hashlib.sha256(f"{session.provider}\0{session.auth_time!r}".encode()).hexdigest()[:32]


def csrf_token(request: Request) -> str:
    """Bound to this browser's sign-in: a form from another session or site cannot log anyone out."""
    gateway = gateway_of(request)
    return gateway.csrf.dumps(_binding(gateway.token_cookie.read(request)) or "")


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    """Sign out (CONTRACT §3): close this user's sockets, refuse the token from now on, clear the cookies,
    revoke at the provider (after answering: its trouble never holds a logout up), then the provider's
    own logout through a form the page posts (the ID token never sits in a URL). A GET is 405."""
    gateway = gateway_of(request)
    session = gateway.token_cookie.read(request)
    refresh = gateway.revoke_cookie.read(request)
    id_token = gateway.idt_cookie.read(request)
    signed_in = session or refresh or id_token
    try:
        bound = gateway.csrf.loads(csrf, max_age=gateway.settings.session_max_age)
    except BadData:
        bound = None
    if not isinstance(bound, str) or (signed_in is not None and bound != _binding(signed_in)):
        return error_page(request, 400, "Logout refused",
                          "The logout form was stale or came from elsewhere. Reload the chat and try again.")
    provider = gateway.providers.get(signed_in.provider) if signed_in else None
    if session is not None:
        credentials = Credentials(session.access_token, "cookie", session.provider, session.expires_at,
                                  session.auth_time + gateway.settings.session_max_age)
        await _close_sockets(gateway, credentials)
        await gateway.authenticator.deny(credentials)
    response = await _end_session_page(request, gateway, provider, id_token)
    _clear_cookies(gateway, response)
    if provider is not None:
        tokens = [(s.refresh_token, "refresh_token") for s in (refresh,) if s and s.provider == provider.name]
        tokens += [(s.access_token, "access_token") for s in (session,) if s and s.provider == provider.name]
        response.background = BackgroundTask(revoke_tokens, provider, tokens)
    log.info("signed out%s", f" of {provider.name}" if provider else "")
    return response


async def _close_sockets(gateway: Gateway, credentials: Credentials) -> None:
    """This user's sockets on this instance end now (4401). Asked before the token is denied; when the
    provider cannot say who it is, the sockets end at their next re-check, which the deny-list refuses."""
    try:
        principal = await gateway.authenticator.principal(credentials)
    except CredentialError as exc:
        log.info("logout: sockets left to their next re-check (%s)", exc.code)
        return
    await gateway.hub.disconnect_user(principal.user_id, TOKEN_EXPIRED, "signed out")


async def _end_session_page(request: Request, gateway: Gateway, provider: Provider | None,
                            id_token: IdTokenSession | None) -> Response:
    """The page whose form posts to the provider's end_session_endpoint; without one, 303 to /login."""
    form = None
    if provider is not None:
        try:
            metadata = await provider.metadata()
        except ProviderUnavailable as exc:
            log.warning("logout at %s: no end-session form (%s)", provider.name, exc.detail)
        else:
            hint = id_token.id_token if id_token and id_token.provider == provider.name else None
            form = end_session(metadata, provider.settings.client_id, hint, f"{gateway.settings.public_url}/login")
    if provider is None or form is None:
        return RedirectResponse("/login", status_code=303)
    response = render(request, "logout.html", provider=provider.title, action=form.action, fields=form.fields)
    # Our CSP lets forms post to us only; this one posts to the provider (the middleware keeps this header).
    response.headers["Content-Security-Policy"] = content_security_policy(gateway.settings.public_url,
                                                                          [form.origin])
    return response


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
