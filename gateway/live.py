"""`live_session(websocket, user)`: a socket of your own, kept honest like the chat's (docs/library.md).

While the block runs, the token is checked again whenever its cached answer lapses and when the session
ends; a logout (here, at the provider, or "everywhere"), a revocation or an expiry ends the block with
4401, a lost group or allow-list entry with 4403. Ending the block means cancelling it, as
`asyncio.timeout` does: your code stops at its next `await`, and then the close frame goes out, so it
never races a send of yours. A refresh of the browser's sign-in hands the socket its new token.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from gateway.chat.broker import Event
from gateway.chat.sign_ins import SignIn, SignInIndex
from gateway.chat.watch import TOKEN_EXPIRED, SessionEnd, SessionWatch
from gateway.rules import Rule
from gateway.security import K8S_TOKEN_PREFIX, cookie_credentials, sign_in_of
from gateway.tokens import Principal

if TYPE_CHECKING:
    from gateway.app import Gateway as Wiring


class LiveSockets:
    """This instance's live sessions by user and by browser sign-in: what logouts and refreshes reach.
    The hub hands it every control event (`Hub.listeners`)."""

    def __init__(self) -> None:
        self._users: dict[str, set[LiveSession]] = {}
        self._sign_ins: SignInIndex[LiveSession] = SignInIndex()

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._users.values())

    def add(self, session: LiveSession) -> None:
        self._users.setdefault(session.user.user_id, set()).add(session)
        self._sign_ins.add(session)

    def discard(self, session: LiveSession) -> None:
        self._sign_ins.discard(session)
        sessions = self._users.get(session.user.user_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._users[session.user.user_id]

    def hear(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "_kick":  # POST /logout: every socket of that user
            for session in list(self._users.get(str(event.get("user_id")), ())):
                session.end(int(event.get("code") or TOKEN_EXPIRED), str(event.get("reason") or "signed out"))
        elif kind == "_end":  # a sign-in, a provider's session, or every sign-in of a user ended
            for session in self._sign_ins.ended(event, self._users):
                session.end(TOKEN_EXPIRED, str(event.get("reason") or "signed out"))
        elif kind == "_refresh" and isinstance(event.get("sealed"), str):
            for session in self._sign_ins.of_session(str(event.get("session_id"))):
                session.refreshed(event["sealed"])


class LiveSession:
    """What `live_session` yields: the current `user` (re-read at each check) and, once ended, `close_code`."""

    def __init__(self, websocket: WebSocket, user: Principal, wiring: Wiring, subprotocol: str | None) -> None:
        credentials = getattr(websocket.state, "credentials", None)
        if credentials is None:
            raise RuntimeError("live_session(websocket, user) needs the user from gateway.CurrentUser or "
                               "gateway.require(...) on this socket's endpoint: it re-checks those credentials")
        self.websocket = websocket
        self.user = user
        self.close_code: int | None = None
        self.close_reason = ""
        self.sign_in: SignIn | None = sign_in_of(credentials, wiring.settings.session_max_age)
        self._wiring = wiring
        self._subprotocol = subprotocol
        self._rules: list[Rule] = list(getattr(websocket.state, "rules", ()))
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._exiting = False
        self._watch = SessionWatch(user, self._recheck, self._next_check, self._ended)

    async def _recheck(self) -> Principal:
        wiring = self._wiring
        current = await wiring.authenticator.principal(self.websocket.state.credentials)
        wiring.access.check(current)
        for rule in self._rules:
            rule.check(current, wiring.access)
        self.user = current
        return current

    def _next_check(self, current: Principal) -> float:
        return self._wiring.authenticator.recheck_at(current, self.websocket.state.credentials)

    def _ended(self, how: SessionEnd) -> None:
        self.end(how.close_code, how.message)

    def end(self, code: int, reason: str) -> None:
        """End the block now (once): it is cancelled, then the socket is closed with `code`."""
        if self.close_code is not None or self._task is None or self._exiting:
            return
        self.close_code, self.close_reason = code, reason
        self._task.cancel()

    def refreshed(self, sealed: str) -> None:
        from gateway.routes.refresh import sealed_session

        sign_in = self.sign_in
        session = sealed_session(self._wiring, sealed, sign_in.session_id) if sign_in else None
        if sign_in is None or session is None or session.provider != sign_in.provider:
            return
        self.websocket.state.credentials = cookie_credentials(session, self._wiring.settings.session_max_age)
        self._watch.check_now()

    async def __aenter__(self) -> LiveSession:
        websocket = self.websocket
        if websocket.application_state == WebSocketState.CONNECTING:
            offered = websocket.scope.get("subprotocols") or []
            chosen = self._subprotocol if self._subprotocol in offered else None
            if chosen is not None and chosen.startswith(K8S_TOKEN_PREFIX):
                raise ValueError("never select the token's subprotocol entry: it would echo the token")
            await websocket.accept(subprotocol=chosen)
        self._task = asyncio.current_task()
        assert self._task is not None  # an async with runs in a task
        self._cancelling = self._task.cancelling()
        self._wiring.live.add(self)
        self._watch.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> bool:
        self._exiting = True
        self._watch.cancel()
        self._wiring.live.discard(self)
        disconnected = exc_type is not None and issubclass(exc_type, WebSocketDisconnect)
        if self.close_code is None:
            return disconnected  # the client left: the end of the block, not an error
        assert self._task is not None
        ours = self._task.uncancel() <= self._cancelling  # no one else cancelled this task meanwhile
        # A close reason is at most 123 bytes; it may quote a user's name (4403), so cut bytes, not chars.
        reason = self.close_reason.encode()[:120].decode(errors="ignore")
        try:
            await self.websocket.close(self.close_code, reason)
        except (RuntimeError, WebSocketDisconnect):
            pass  # the client left, or the socket was closed already: nothing left to tell it
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            return ours
        return disconnected


def live_session(websocket: WebSocket, user: Principal, *, subprotocol: str | None = None) -> LiveSession:
    """Accept the socket (selecting `subprotocol` when the client offered it) unless it is already accepted,
    and keep it honest until the block ends; use as `async with live_session(websocket, user): ...`."""
    wiring: Wiring | None = getattr(websocket.app.state, "gateway", None)
    if wiring is None:
        raise RuntimeError("no gateway on this app: call Gateway.install(app) first")
    return LiveSession(websocket, user, wiring, subprotocol)
