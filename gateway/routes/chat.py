"""The chat page and the chat socket (CONTRACT §5, §6)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket
from fastapi.responses import RedirectResponse, Response
from starlette.websockets import WebSocketDisconnect

from gateway.chat.frames import FrameError, Ping, Resume, SendMessage, decode_frame, encode, error_frame
from gateway.chat.history import StoreUnavailable
from gateway.chat.hub import Member
from gateway.chat.watch import watch_session
from gateway.errors import InvalidRequest, InvalidToken, MissingCredentials, ProviderUnavailable
from gateway.routes.auth import csrf_token
from gateway.routes.pages import error_page, gateway_of, render
from gateway.security import CHAT_PROTOCOL, CurrentUser, authenticate
from gateway.tokens import Principal

log = logging.getLogger("gateway.chat")
router = APIRouter()

ROOM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_ROOM = "lobby"


def room_name(room: str) -> str:
    """Dependency: checked before authentication, so a bad name costs no provider call."""
    if not ROOM_NAME.match(room):
        raise HTTPException(400, "room names are 1-64 letters, digits, '-' or '_'")
    return room


Room = Annotated[str, Depends(room_name)]


@router.get("/chat")
async def chat_lobby(request: Request) -> Response:
    return await _chat_page(request, DEFAULT_ROOM)


@router.get("/chat/{room}")
async def chat_room(request: Request, room: str) -> Response:
    if not ROOM_NAME.match(room):
        return error_page(request, 400, "No such room", "Room names are 1-64 letters, digits, '-' or '_'.")
    return await _chat_page(request, room)


async def _chat_page(request: Request, room: str) -> Response:
    gateway = gateway_of(request)
    try:
        principal = await authenticate(request, gateway)
    except (MissingCredentials, InvalidToken):
        return RedirectResponse(f"/login?next={quote(request.url.path, safe='')}", status_code=303)
    except ProviderUnavailable as exc:
        return error_page(request, 503, "Provider unavailable",
                          "Your sign-in provider cannot be reached right now; this page will work again "
                          "once it answers.", headers={"Retry-After": str(exc.retry_after)})
    except InvalidRequest as exc:
        return error_page(request, 400, "Bad credentials", exc.detail)
    return render(request, "chat.html", user=principal, room=room, csrf=csrf_token(request))


@router.websocket("/ws/{room}")
async def chat_socket(websocket: WebSocket, room: Room, principal: CurrentUser) -> None:
    gateway = gateway_of(websocket)
    hub = gateway.hub
    user = principal.public()
    if hub.sockets_of(user["id"]) >= gateway.settings.max_sockets_per_user:
        raise HTTPException(429, f"at most {gateway.settings.max_sockets_per_user} sockets per user",
                            headers={"Retry-After": "5"})
    offered = websocket.scope.get("subprotocols") or []
    # Never echo a token entry: select our protocol when offered, else none.
    await websocket.accept(subprotocol=CHAT_PROTOCOL if CHAT_PROTOCOL in offered else None)
    member = hub.member(room, user)
    try:
        await hub.join(member)
        await _run(websocket, member, principal)
    except StoreUnavailable:
        await _close_quietly(websocket, 1011, "chat store unavailable; reconnect later")
    finally:
        await hub.leave(member)


async def _close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def _run(websocket: WebSocket, member: Member, principal: Principal) -> None:
    """A reader, a writer and a session watch per socket; when one ends, the others are cancelled."""
    tasks = {
        asyncio.create_task(_read(websocket, member)),
        asyncio.create_task(_write(websocket, member)),
        asyncio.create_task(_watch(websocket, member, principal)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _watch(websocket: WebSocket, member: Member, principal: Principal) -> None:
    authenticator = gateway_of(websocket).authenticator
    credentials = websocket.state.credentials
    end = await watch_session(
        principal,
        recheck=lambda: authenticator.principal(credentials),
        next_check=lambda current: authenticator.recheck_at(current, credentials),
        on_trouble=lambda: member.outbox.put(error_frame("provider_unavailable",
                                                         "the sign-in provider is unreachable; still connected")),
    )
    member.outbox.put(error_frame(end.error, end.message))
    member.outbox.close(end.close_code, end.message)
    await asyncio.Event().wait()  # the writer closes the socket; it cancels us then


async def _read(websocket: WebSocket, member: Member) -> None:
    hub = gateway_of(websocket).hub
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            member.outbox.close(1003, "binary frames are not accepted; send JSON text")
            return
        try:
            frame = decode_frame(text)
        except FrameError as exc:
            if exc.close_code is not None:
                member.outbox.close(exc.close_code, exc.message)
                return
            member.outbox.put(error_frame(exc.code, exc.message))
            continue
        if isinstance(frame, Ping):
            member.outbox.put(encode({"type": "pong"}))
        elif isinstance(frame, Resume):
            await hub.resume(member, frame.after)
        elif isinstance(frame, SendMessage):
            await hub.post(member, frame.text, frame.client_id)


async def _write(websocket: WebSocket, member: Member) -> None:
    try:
        while (frame := await member.outbox.get()) is not None:
            await websocket.send_text(frame)
        await websocket.close(member.outbox.close_code or 1000, member.outbox.close_reason[:120])
    except (WebSocketDisconnect, RuntimeError):
        # The peer is gone (or uvicorn already closed the socket): nothing left to tell it.
        return
