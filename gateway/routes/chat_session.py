"""A chat socket once accepted (gateway.routes.chat): a writer, a reader task, the session watch.

The writer owns the close: whatever decides the socket ends (the reader, the watch, fan-out) tells the
outbox, and the writer sends what is queued, then the close frame (docs/protocol.md, close codes).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from gateway.authenticator import Credentials
from gateway.chat.frames import (
    Edit,
    FrameError,
    Older,
    Ping,
    Read,
    Resume,
    SendMessage,
    Typing,
    decode_frame,
    encode,
    error_frame,
)
from gateway.chat.member import Member
from gateway.chat.outbox import server_frame
from gateway.chat.watch import NOT_ALLOWED, TOKEN_EXPIRED, SessionEnd, SessionWatch
from gateway.errors import CredentialError, Forbidden, ProviderUnavailable
from gateway.routes.pages import gateway_of
from gateway.routes.refresh import sealed_session
from gateway.tokens import Principal

log = logging.getLogger("gateway.chat")


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    gateway_of(websocket).metrics.stats.closes[code] += 1
    try:
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def run(websocket: WebSocket, member: Member, principal: Principal) -> None:
    """Two tasks per socket: this one writes, a reader task reads; the session watch is a timer. The
    writer owns the close: whatever decides the socket ends (the reader, the watch, fan-out) tells the
    outbox, and the writer sends what is queued, then the close frame. A peer that closed first (or
    vanished) gets nothing more: uvicorn has answered its close frame already."""
    outbox = member.outbox
    reader = asyncio.create_task(_read(websocket, member))
    reader.add_done_callback(partial(_reader_done, member=member))
    watch = _watch(websocket, member, principal).start()
    try:
        await _write(websocket, member)
    finally:
        watch.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        outbox.abandon()


def _reader_done(task: asyncio.Task[None], *, member: Member) -> None:
    if task.cancelled():
        return
    failure = task.exception()
    if failure is not None:
        # A bug, not the client: say so in the log and to the client (1011), never drop it silently.
        log.error("chat socket in %s failed; closing it with 1011", member.room, exc_info=failure)
        member.outbox.close(1011, "server error; reconnect")


class _Checks:
    """What the session watch asks of one socket, as bound methods of one small object rather than
    closures (a function, its cells and their tuple each): a storm's cost is mostly the garbage
    collector's, which grows with the objects each socket holds (bench/README.md)."""

    __slots__ = ("gateway", "member", "watch", "websocket")

    def __init__(self, websocket: WebSocket, member: Member) -> None:
        self.websocket = websocket
        self.member = member
        self.gateway = gateway_of(websocket)
        self.watch: SessionWatch | None = None

    async def recheck(self) -> Principal:
        # Read at each check: a refresh of the sign-in replaces them (refreshed below).
        current = await self.gateway.authenticator.principal(self.websocket.state.credentials)
        self.gateway.access.check(current, self.member.room)  # a lost group or a changed claim ends it: 4403
        return current

    def next_check(self, current: Principal) -> float:
        return self.gateway.authenticator.recheck_at(current, self.websocket.state.credentials)

    def end(self, how: SessionEnd) -> None:
        self.member.outbox.put(error_frame(how.error, how.message))
        self.member.outbox.close(how.close_code, how.message)

    def trouble(self) -> None:
        self.member.outbox.put(error_frame("provider_unavailable",
                                           "the sign-in provider is unreachable; still connected"))

    def refreshed(self, sealed: str) -> None:
        """The sign-in was refreshed (here or on another instance): take its new token and expiry, check it
        now, and tell the page when it ends (a `session` frame)."""
        gateway, sign_in = self.gateway, self.member.sign_in
        if sign_in is None:
            return
        session = sealed_session(gateway, sealed, sign_in.session_id)
        if session is None or session.provider != sign_in.provider:
            return
        ends = session.auth_time + gateway.settings.session_max_age
        self.websocket.state.credentials = Credentials(session.access_token, "cookie", session.provider,
                                                       session.expires_at, ends, session.session_id,
                                                       session.sid or None)
        if self.watch is not None:
            self.watch.check_now()
        expires_at = min(ends, session.expires_at) if session.expires_at is not None else ends
        self.member.outbox.put(encode({"type": "session", "expires_at": expires_at}))


def _watch(websocket: WebSocket, member: Member, principal: Principal) -> SessionWatch:
    checks = _Checks(websocket, member)
    watch = checks.watch = SessionWatch(principal, recheck=checks.recheck, next_check=checks.next_check,
                                        on_end=checks.end, on_trouble=checks.trouble)
    if member.sign_in is not None:
        member.on_refresh = checks.refreshed
    return watch


async def _read(websocket: WebSocket, member: Member) -> None:
    gateway = gateway_of(websocket)
    hub = gateway.hub
    outbox = member.outbox
    idle = gateway.settings.idle_timeout or None
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), idle)
        except TimeoutError:
            # 1000: a normal close the page does not retry on its own (it reconnects on the next keypress).
            outbox.close(1000, f"idle: no frame for {gateway.settings.idle_timeout:g} s")
            return
        if message["type"] == "websocket.disconnect":
            outbox.abandon()  # the peer closed (uvicorn answered its close) or vanished
            return
        if outbox.close_code is not None:
            continue  # closing: keep reading until the peer's close comes, but act on nothing more
        text = message.get("text")
        if text is None:
            outbox.close(1003, "binary frames are not accepted; send JSON text")
            continue
        try:
            frame = decode_frame(text)
        except FrameError as exc:
            if exc.close_code is not None:
                outbox.close(exc.close_code, exc.message)
            else:
                outbox.put(error_frame(exc.code, exc.message, exc.client_id))
            continue
        if isinstance(frame, Ping):
            outbox.put(encode({"type": "pong"}))
        elif not await _allowed_now(websocket, member):
            continue  # the writer sends the error and closes
        elif isinstance(frame, Resume):
            await hub.resume(member, frame.after)
        elif isinstance(frame, SendMessage):
            await hub.post(member, frame.text, frame.client_id)
        elif isinstance(frame, Older):
            await hub.older(member, frame.before)
        elif isinstance(frame, Edit):
            await hub.change(member, frame.id, frame.text)
        elif isinstance(frame, Read):
            await hub.read(member, frame.id)
        elif isinstance(frame, Typing):
            await hub.typing(member)


async def _allowed_now(websocket: WebSocket, member: Member) -> bool:
    """Messages and resumes are checked against the sender's access now, not at the handshake: the
    watch wakes only when the cached answer lapses, and a frame may come first. Cached, so cheap."""
    gateway = gateway_of(websocket)
    try:
        gateway.access.check(await gateway.authenticator.principal(websocket.state.credentials), member.room)
    except ProviderUnavailable:
        return True  # not the user's fault: let it through, the watch keeps asking
    except Forbidden as exc:
        member.outbox.put(error_frame("forbidden", exc.detail))
        member.outbox.close(NOT_ALLOWED, exc.detail)
        return False
    except CredentialError as exc:  # expired or revoked
        member.outbox.put(error_frame("token_expired", exc.detail))
        member.outbox.close(TOKEN_EXPIRED, exc.detail)
        return False
    return True


async def _write(websocket: WebSocket, member: Member) -> None:
    outbox = member.outbox
    try:
        while (frame := await outbox.get()) is not None:
            # Straight to the transport when it takes it now (as fan-out does): the ASGI send path costs
            # more than the frame, and a storm's presence lists queued during joins are long.
            if outbox.direct is not None and outbox.direct(server_frame(frame)):
                continue
            outbox.sending = True
            await websocket.send_text(frame)
            outbox.sending = False
        if outbox.gone:
            return
        # A close reason is at most 123 bytes; it may quote a user's name (4403), so cut bytes, not chars.
        reason = outbox.close_reason.encode()[:120].decode(errors="ignore")
        code = outbox.close_code or 1000
        gateway_of(websocket).metrics.stats.closes[code] += 1
        # uvicorn waits for the peer's close frame by itself (up to 10 s) after we return.
        await websocket.close(code, reason)
    except (WebSocketDisconnect, RuntimeError):
        # The peer is gone (or uvicorn already closed the socket): nothing left to tell it.
        return
