"""The short-lived login-state session (authlib's state, PKCE verifier, nonce, `next`).

Like Starlette's SessionMiddleware, but the cookie is sealed (readable by no one but us), has its own
name (the demo provider's Flask cookie is called `session` and cookies ignore ports) and is only
written when the session changed.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.sealing import Sealer

LOGIN_STATE_MAX_AGE = 600  # a sign-in must finish within ten minutes


class LoginStateMiddleware:
    def __init__(self, app: ASGIApp, sealer: Sealer, https: bool) -> None:
        self.app = app
        self.sealer = sealer
        self.secure = https
        self.name = "__Host-gateway_login" if https else "gateway_login"

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain method handing on the app's own awaitable: no frame of ours kept for a socket's life.
        if scope["type"] != "http":  # sign-in state is only read and written by HTTP routes
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = HTTPConnection(scope).cookies.get(self.name)
        opened = self.sealer.open(raw, LOGIN_STATE_MAX_AGE) if raw else None
        initial = opened or {}
        scope["session"] = dict(initial)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                session = scope["session"]
                if session != initial or (raw and opened is None):
                    headers = MutableHeaders(scope=message)
                    cookie = Response()
                    if session:
                        cookie.set_cookie(
                            self.name, self.sealer.seal(session), max_age=LOGIN_STATE_MAX_AGE,
                            path="/", secure=self.secure, httponly=True, samesite="lax",
                        )
                    else:
                        cookie.delete_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="lax")
                    for key, value in cookie.raw_headers:
                        if key == b"set-cookie":
                            headers.append("set-cookie", value.decode("latin-1"))
            await send(message)

        await self.app(scope, receive, send_wrapper)
