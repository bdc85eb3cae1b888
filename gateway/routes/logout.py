"""POST /logout and the CSRF token of its form: the gateway's own sign-out (sockets closed, the token and
the whole sign-in refused from then on, cookies cleared), then the provider's (gateway.logout)."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadData
from starlette.background import BackgroundTask

from gateway.app import Gateway
from gateway.authenticator import Credentials
from gateway.chat.watch import TOKEN_EXPIRED
from gateway.cookies import SignInSession, TokenSession
from gateway.errors import CredentialError, ProviderUnavailable
from gateway.headers import content_security_policy
from gateway.logout import end_session, revoke_tokens
from gateway.path_cookies import IdTokenSession, RefreshSession
from gateway.providers import Provider
from gateway.routes.auth import clear_cookies
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import origin_of

log = logging.getLogger("gateway.auth")
router = APIRouter()


def _binding(session: TokenSession | SignInSession | RefreshSession | IdTokenSession | None) -> str | None:
    """What a logout form is bound to: this browser's sign-in (provider and time), sealed in each of its
    cookies, unchanged by refreshes and readable by no one else."""
    if session is None:
        return None
    return hashlib.sha256(f"{session.provider}\0{session.auth_time!r}".encode()).hexdigest()[:32]


def csrf_token(request: Request) -> str:
    """Bound to this browser's sign-in: a form from another session or site cannot log anyone out."""
    gateway = gateway_of(request)
    return gateway.csrf.dumps(_binding(gateway.token_cookie.read(request)) or "")


def _foreign_origin(request: Request, gateway: Gateway, required: bool) -> bool:
    """A state-changing form must come from our own pages: an Origin other than ours is refused, and so is
    none where `required` (browsers send one with every POST)."""
    origin = request.headers.get("origin")
    if origin is None:
        return required
    return origin.lower() != origin_of(gateway.settings.public_url)


@router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form()] = "",
                 everywhere: Annotated[str, Form()] = "") -> Response:
    """Sign out: close this user's sockets, refuse the token and the whole sign-in (its refresh cookie, any
    copy) from now on, clear the cookies, revoke at the provider (after answering: its trouble never holds a
    logout up), then the provider's own logout through a form the page posts (the ID token never sits in a
    URL). A GET is 405."""
    gateway = gateway_of(request)
    session = gateway.token_cookie.read(request)
    anchor = gateway.session_cookie.read(request)
    session_id = anchor.session_id if anchor else (session.session_id if session else None)
    refresh = gateway.revoke_cookie.read(request, session_id)
    id_token = gateway.idt_cookie.read(request, session_id)
    signed_in = session or anchor or refresh or id_token
    try:
        bound = gateway.csrf.loads(csrf, max_age=gateway.settings.session_max_age)
    except BadData:
        bound = None
    if not isinstance(bound, str) or (signed_in is not None and bound != _binding(signed_in)) \
            or _foreign_origin(request, gateway, required=everywhere == "1"):
        return error_page(request, 400, "Logout refused",
                          "The logout form was stale or came from elsewhere. Reload the chat and try again.")
    provider = gateway.providers.get(signed_in.provider) if signed_in else None
    if everywhere == "1" and signed_in is not None:
        await _end_everywhere(gateway, session, anchor)
    if session is not None:
        credentials = Credentials(session.access_token, "cookie", session.provider, session.expires_at,
                                  session.auth_time + gateway.settings.session_max_age)
        await _close_sockets(gateway, credentials)
        await gateway.authenticator.deny(credentials)
    ended = {s.session_id: s.auth_time for s in (session, anchor) if s and s.session_id}
    for ended_id, auth_time in ended.items():
        await gateway.authenticator.end_session(ended_id, auth_time + gateway.settings.session_max_age)
    response = await _end_session_page(request, gateway, provider, id_token)
    clear_cookies(gateway, response)
    gateway.token_cookie.forget(request)
    if provider is not None:
        tokens = [(s.refresh_token, "refresh_token") for s in (refresh,) if s and s.provider == provider.name]
        tokens += [(s.access_token, "access_token") for s in (session,) if s and s.provider == provider.name]
        response.background = BackgroundTask(revoke_tokens, provider, tokens)
    log.info("signed out%s", f" of {provider.name}" if provider else "")
    return response


async def _end_everywhere(gateway: Gateway, session: TokenSession | None, anchor: SignInSession | None) -> None:
    """Sign out everywhere: every sign-in of this user at this provider made until now ends, on every
    instance (their sockets close with 4401, their cookies and refresh tokens are refused)."""
    user_id = None
    if session is not None:
        credentials = Credentials(session.access_token, "cookie", session.provider, session.expires_at)
        try:
            user_id = (await gateway.authenticator.principal(credentials)).user_id
        except CredentialError as exc:
            log.info("sign-out everywhere: the token does not say who (%s)", exc.code)
    if user_id is None and anchor is not None and anchor.subject:
        user_id = f"{anchor.provider}:{anchor.subject}"
    if user_id is None:
        log.warning("sign-out everywhere: no user known for this sign-in; only this one ends")
        return
    now = time.time()
    await gateway.authenticator.end_user_sessions(user_id, now)
    await gateway.hub.end_sign_ins("signed out of every session", user_id=user_id, before=now)
    log.info("signed out of every session at %s", user_id.split(":", 1)[0])


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
    response.headers["Referrer-Policy"] = "no-referrer"  # the page that leaves for the provider tells it nothing
    return response
