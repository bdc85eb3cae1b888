"""The chat page and the chat socket (docs/protocol.md)."""

from __future__ import annotations

import logging
import math
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, WebSocket
from fastapi.responses import RedirectResponse, Response

from gateway.access import ROOM_NAME
from gateway.chat.history import StoreUnavailable, parse_id
from gateway.errors import (
    Forbidden,
    InvalidRequest,
    InvalidToken,
    MissingCredentials,
    ProviderUnavailable,
)
from gateway.routes.chat_session import close_quietly, run
from gateway.routes.logout import csrf_token
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import CHAT_PROTOCOL, authenticate, current_principal, sign_in_of, to_http_exception

log = logging.getLogger("gateway.chat")
router = APIRouter()

DEFAULT_ROOM = "lobby"


async def room_name(room: str) -> str:
    """Checked before authentication, so a bad name costs no provider call."""
    if not ROOM_NAME.fullmatch(room):
        raise HTTPException(400, "room names are 1-64 letters, digits, '-' or '_'")
    return room


@router.get("/chat")
async def chat_lobby(request: Request) -> Response:
    return await _chat_page(request, DEFAULT_ROOM)


@router.get("/chat/{room}")
async def chat_room(request: Request, room: str) -> Response:
    if not ROOM_NAME.fullmatch(room):
        return error_page(request, 400, "No such room", "Room names are 1-64 letters, digits, '-' or '_'.")
    return await _chat_page(request, room)


async def _chat_page(request: Request, room: str) -> Response:
    gateway = gateway_of(request)
    try:
        principal = await authenticate(request, gateway, room)
    except (MissingCredentials, InvalidToken):
        return RedirectResponse(f"/login?next={quote(request.url.path, safe='')}", status_code=303)
    except ProviderUnavailable as exc:
        return error_page(request, 503, "Provider unavailable",
                          "Your sign-in provider cannot be reached right now; this page will work again "
                          "once it answers.", headers={"Retry-After": str(exc.retry_after)})
    except InvalidRequest as exc:
        return error_page(request, 400, "Bad credentials", exc.detail)
    except Forbidden as exc:
        # "signed in as X, not allowed here: why", with a way out: log out, or sign in as someone else.
        return render(request, "error.html", 403, title="Not allowed here", message=exc.detail,
                      csrf=csrf_token(request))
    return render(request, "chat.html", user=principal, room=room, csrf=csrf_token(request),
                  edit_window=gateway.settings.edit_window)


async def resume_point(after: str | None = None) -> str | None:
    """`?after=<id>` on the handshake, checked before accept."""
    if after is None:
        return None
    try:
        parse_id(after)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return after


def presence_form(value: str | None) -> bool:
    """`?presence=changes` on the handshake: presence batches come as `presence_changes` frames (who
    joined, who left) instead of full lists. Absent: full lists, as before. Checked before accept."""
    if value is None:
        return False
    if value != "changes":
        raise HTTPException(400, "presence must be 'changes' (or left out for full lists)")
    return True


async def chat_socket(websocket: WebSocket) -> None:
    """WS /ws/{room} (docs/protocol.md). A plain Starlette route, not FastAPI's dependency injection: its
    solving cost about a tenth of each handshake. The checks run in the same order a dependency list
    would (room name, credentials, resume point), each refusal an HTTP answer before accept."""
    room = await room_name(websocket.path_params["room"])
    principal = await current_principal(websocket)
    after = await resume_point(websocket.query_params.get("after"))
    changes = presence_form(websocket.query_params.get("presence"))
    gateway = gateway_of(websocket)
    hub = gateway.hub
    user = principal.public()
    stats = gateway.metrics.stats
    try:
        gateway.access.check(principal, room)  # the room's rule; refused before accept, so no history leaks
    except Forbidden as exc:
        stats.handshake("forbidden")
        raise to_http_exception(exc) from None
    if hub.sockets_of(user["id"]) >= gateway.settings.max_sockets_per_user:
        stats.handshake("rate_limited")
        raise HTTPException(429, f"at most {gateway.settings.max_sockets_per_user} sockets per user",
                            headers={"Retry-After": "5"})
    if after is not None and (wait := hub.resume_allowed(user["id"])):
        stats.handshake("rate_limited")
        raise HTTPException(429, "too many resumes (?after=) for this user; wait, then reconnect",
                            headers={"Retry-After": str(math.ceil(wait))})
    stats.handshake("ok")
    offered = websocket.scope.get("subprotocols") or []
    # Never echo a token entry: select our protocol when offered, else none.
    await websocket.accept(subprotocol=CHAT_PROTOCOL if CHAT_PROTOCOL in offered else None)
    member = hub.member(room, user)
    member.presence_changes = changes
    member.sign_in = sign_in_of(websocket.state.credentials, gateway.settings.session_max_age)
    direct = websocket.scope.get("extensions", {}).get("gateway.frame")
    try:
        await hub.join(member, after)
        if after is not None:
            await hub.send_changes(member, after)  # edits and deletes of messages it may hold
        if direct is not None:
            member.outbox.direct = direct["write"]
            member.outbox.flush_head()  # welcome, history, presence: one write, not three ASGI sends
        await run(websocket, member, principal)
    except StoreUnavailable:
        await close_quietly(websocket, 1011, "chat store unavailable; reconnect later")
    finally:
        await hub.leave(member)


router.add_websocket_route("/ws/{room}", chat_socket)
