"""Logout the provider starts (docs/logout.md): OpenID Connect Back-Channel Logout 1.0 (the provider posts a
logout token) and Front-Channel Logout 1.0 (the provider frames a page of ours). Either ends the sign-ins it
names: their sockets close with 4401 on every instance, their cookies and refresh tokens are refused."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from gateway.app import Gateway
from gateway.cookies import PROVIDER_ID, SignInSession, TokenSession
from gateway.errors import ProviderUnavailable
from gateway.logout import csp_origin, supports
from gateway.logout_token import InvalidLogoutToken, LogoutToken
from gateway.providers import Provider
from gateway.routes.auth import clear_cookies
from gateway.routes.pages import gateway_of

log = logging.getLogger("gateway.auth")
router = APIRouter()

MAX_FORM_BYTES = 16 * 1024  # a logout token is a few hundred bytes; the form has one field
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store"}


def _bad(description: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "error_description": description}, status_code=400,
                        headers=NO_STORE)


async def _form_field(request: Request, name: str) -> str | JSONResponse:
    """The one form field, from a body read up to MAX_FORM_BYTES (never all of a bigger one)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return _bad(f"send the logout token as a form ({FORM_TYPE})")
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        return _bad(f"the form is over {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _bad(f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return _bad("the form is not URL-encoded ASCII")
    values = [value for key, value in fields if key == name]
    if len(values) != 1 or not values[0]:
        return _bad(f"the form must hold exactly one {name}")
    return values[0]


async def end_logged_out(gateway: Gateway, provider: Provider, token: LogoutToken) -> None:
    """The effect of a verified logout token: with a `sid`, the sign-ins in that provider session; with only
    a `sub`, every sign-in of that user at this provider made until now."""
    reason = f"{provider.title} ended this session"
    if token.sid is not None:
        await gateway.authenticator.end_provider_session(provider.name, token.sid)
        await gateway.hub.end_sign_ins(reason, provider=provider.name, sid=token.sid)
    else:
        user_id = f"{provider.name}:{token.sub}"
        now = time.time()
        await gateway.authenticator.end_user_sessions(user_id, now)
        await gateway.hub.end_sign_ins(reason, user_id=user_id, before=now)


@router.post("/auth/{name}/backchannel-logout")
async def backchannel_logout(request: Request, name: str) -> Response:
    """200 once the sign-ins the token names are ended; 400 `invalid_request` for anything wrong (nothing
    changes then); 404 for a provider without back-channel logout; 503 when its keys cannot be loaded."""
    gateway = gateway_of(request)
    provider = gateway.providers.get(name)
    if provider is None or not await supports(provider, "backchannel"):
        return JSONResponse({"error": "not_found", "error_description": "no back-channel logout here"},
                            status_code=404, headers=NO_STORE)
    field = await _form_field(request, "logout_token")
    if isinstance(field, JSONResponse):
        return field
    try:
        token = await gateway.logout_tokens.verify(provider, field)
    except InvalidLogoutToken as exc:
        log.info("back-channel logout from %s refused: %s", name, exc.detail)
        return _bad(exc.detail)
    except ProviderUnavailable as exc:
        log.warning("back-channel logout from %s not checked: %s", name, exc.detail)
        return JSONResponse({"error": "temporarily_unavailable", "error_description": exc.detail},
                            status_code=503, headers={**NO_STORE, "Retry-After": str(exc.retry_after)})
    await end_logged_out(gateway, provider, token)
    log.info("back-channel logout from %s: ended %s", name, "its session" if token.sid else "the user's sessions")
    return Response(status_code=200, headers=NO_STORE)


def _frame_page(provider: Provider, text: str, status: int = 200) -> HTMLResponse:
    """A page only the provider may frame (CSP frame-ancestors); every other page of ours says 'none'."""
    response = HTMLResponse(f"<!doctype html><title>Logout</title><p>{text}</p>", status_code=status,
                            headers=NO_STORE)
    ancestors = csp_origin(provider.issuer or "") or "'none'"
    response.headers["Content-Security-Policy"] = (f"default-src 'none'; frame-ancestors {ancestors}; "
                                                   "base-uri 'none'; form-action 'none'")
    return response


@router.get("/auth/{name}/frontchannel-logout")
async def frontchannel_logout(request: Request, name: str, iss: str = "", sid: str = "") -> Response:
    """Loaded by the provider in an iframe: with its issuer and the `sid` of the sign-in in this browser's
    cookie, that sign-in ends (another session's sid changes nothing). 400 for a missing or wrong `iss`."""
    gateway = gateway_of(request)
    provider = gateway.providers.get(name)
    if provider is None or not await supports(provider, "frontchannel"):
        return JSONResponse({"error": "not_found", "error_description": "no front-channel logout here"},
                            status_code=404, headers=NO_STORE)
    if iss != provider.issuer or not PROVIDER_ID.fullmatch(sid):
        return _frame_page(provider, "This logout request names another issuer or no session.", 400)
    anchor = gateway.session_cookie.read(request)
    session = gateway.token_cookie.read(request)
    signed_in: SignInSession | TokenSession | None = anchor or session
    if signed_in is None or signed_in.provider != name or signed_in.sid != sid or not signed_in.session_id:
        return _frame_page(provider, "No session of this browser matches; nothing changed.")
    until = signed_in.auth_time + gateway.settings.session_max_age
    await gateway.authenticator.end_session(signed_in.session_id, until)
    await gateway.authenticator.end_provider_session(name, sid)
    await gateway.hub.end_sign_ins(f"{provider.title} ended this session", provider=name, sid=sid)
    log.info("front-channel logout from %s: ended this browser's session", name)
    response = _frame_page(provider, "Signed out.")
    clear_cookies(gateway, response)
    return response
