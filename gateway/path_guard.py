"""Paths with control characters are refused before routing.

Starlette's route patterns end in `$`, which also matches before a final newline: `/healthz%0A` reached
`/healthz`, and any route could be named by a look-alike. No path of the gateway holds a control
character, so one that does is refused here (400, or a refused handshake) instead of being routed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ControlCharacterPaths:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain method handing on the app's own awaitable: no frame of ours kept for a socket's life.
        if scope["type"] not in ("http", "websocket") or not CONTROL.search(scope["path"]):
            return self.app(scope, receive, send)
        return self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse({"error": "bad_path", "detail": "the path holds a control character"},
                                status_code=400)
        await response(scope, receive, send)
