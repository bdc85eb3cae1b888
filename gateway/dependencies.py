"""The dependencies of the public API (docs/library.md), for HTTP routes and WebSocket endpoints alike: who
is behind a request, refused with a real HTTP status (401, 403, 503...) before any accept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from gateway.errors import CredentialError, InvalidToken, MissingCredentials
from gateway.rules import Rule
from gateway.security import CurrentUser, authenticate, extract_credentials, to_http_exception
from gateway.tokens import Principal

if TYPE_CHECKING:
    from gateway.app import Gateway as Wiring

__all__ = ["CurrentUser", "OptionalUser", "optional_user", "require"]


def wiring_of(conn: HTTPConnection) -> Wiring:
    wiring: Wiring | None = getattr(conn.app.state, "gateway", None)
    if wiring is None:
        raise RuntimeError("no gateway on this app: call Gateway.install(app) before it serves")
    return wiring


def _refused(conn: HTTPConnection, wiring: Wiring, error: CredentialError) -> Exception:
    if conn.scope["type"] == "websocket":
        wiring.metrics.stats.handshake(error.code)
    return to_http_exception(error)


async def optional_user(conn: HTTPConnection) -> Principal | None:
    """None when the request carries no credentials, or only a sign-in cookie whose token is no longer
    valid (a page that works signed out shows its signed-out face); otherwise as CurrentUser: a bad or
    rejected header token is 400/401, a user who is not allowed 403, provider trouble 503."""
    wiring = wiring_of(conn)
    try:
        return await authenticate(conn, wiring)
    except MissingCredentials:
        return None
    except InvalidToken as error:
        credentials = extract_credentials(conn, wiring)
        if credentials is not None and credentials.source == "cookie":
            return None
        raise _refused(conn, wiring, error) from None
    except CredentialError as error:
        raise _refused(conn, wiring, error) from None


OptionalUser = Annotated[Principal | None, Depends(optional_user)]


def require(*, groups: Iterable[str] = (), scopes: Iterable[str] = (),
            emails: Iterable[str] = ()) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """A dependency like CurrentUser that also needs one of `groups`, every one of `scopes` and one of
    `emails` (each only when given): 403 otherwise (`insufficient_scope` for scopes). A live_session on
    the socket keeps checking the rule."""
    rule = Rule.of(groups, scopes, emails)

    async def required(conn: HTTPConnection) -> Principal:
        wiring = wiring_of(conn)
        try:
            principal = await authenticate(conn, wiring)
            rule.check(principal, wiring.access)
        except CredentialError as error:
            raise _refused(conn, wiring, error) from None
        conn.state.rules = [*getattr(conn.state, "rules", ()), rule]
        return principal

    return required
