"""Running the app under uvicorn with the WebSocket settings the contract needs (CONTRACT §5)."""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

MAX_CLIENT_FRAME = 4096


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with two handshake bugs fixed.

    - A request its parser rejects (a header line over 8 KiB, say) had its 4xx answer built but never
      written: the client hung until its own timeout. We write it and close.
    - Every handshake refused with a denial response logged "ASGI callable returned without completing
      handshake." at ERROR: the denial does complete the handshake, so we mark it so.
    """

    def handle_parser_exception(self) -> None:
        if self.conn.close_sent is None:  # failed during the HTTP handshake, not a WebSocket frame
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = True
            self.close_sent = True
            self.transport.close()
            return
        super().handle_parser_exception()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info", **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=GatewayWebSocketProtocol,  # type: ignore[arg-type]
        ws_max_size=MAX_CLIENT_FRAME,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        access_log=False,  # ours (gateway.logs) leaves out query strings: the OAuth callback's code and state
        proxy_headers=False,
        server_header=False,
        log_config=None,
        log_level=log_level,
        **extra,
    )
