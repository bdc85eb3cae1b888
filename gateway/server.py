"""Running the app under uvicorn with the WebSocket settings the chat protocol needs (docs/protocol.md)."""

from __future__ import annotations

import errno
import gc
import socket
from typing import Any

import uvicorn
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.errors import PortUnavailable
from gateway.logs import quiet_uvicorn_queries

MAX_CLIENT_FRAME = 4096


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with two handshake bugs fixed.

    - A request its parser rejects (a header line over 8 KiB, say) had its 431 built but never written:
      the client hung until its own timeout. We write it and close.
    - Every handshake refused with a denial response logged "ASGI callable returned without completing
      handshake." at ERROR: the denial does complete the handshake, so we mark it so.
    - A text message that is not UTF-8 was closed with 1007, rightly, but logged at ERROR with a traceback:
      any client could fill the error log. It is the client's fault; we close without the noise.

    And one leak closed: at DEBUG, websockets traces every handshake header (Cookie, Authorization, the
    subprotocol token) and every frame into uvicorn's log. We never let it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.debug = False

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.conn.send_close(1007, "text frames must be UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None and not self.close_sent:
            # websockets refused the request itself (431, 414, garbage): its answer is buffered, send it.
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = True
            self.close_sent = True
            self.transport.close()

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        if getattr(self, "scope", None) is not None and not self.close_sent:
            # ASGI extension for the hub's fan-out: one prebuilt frame written straight to the transport.
            self.scope["extensions"]["gateway.frame"] = {"write": self.write_frame}

    def write_frame(self, wire: bytes) -> bool:
        """Write one prebuilt, unmasked, uncompressed server frame now; False when anything could be ahead of
        it or in the way (handshake not done, closing, compression, back-pressure): the caller queues it."""
        if (not self.handshake_complete or self.close_sent or self.initial_response is not None
                or self.conn.extensions or not self.writable.is_set() or self.transport.is_closing()
                or self.transport.get_write_buffer_size() > 65536):
            return False
        self.transport.write(wire)
        return True

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "info", ping_interval: float = 20.0,
                   ping_timeout: float = 20.0, trusted_proxies: list[str] | None = None,
                   gc_threshold: tuple[int, int, int] | None = None, **extra: Any) -> uvicorn.Config:
    quiet_uvicorn_queries()
    # The app is built by now, and what exists lives as long as the process (modules, routes, settings):
    # out of the cyclic GC's sight, every collection while thousands of sockets connect is cheaper
    # (bench/README.md, "Where the rest goes").
    gc.freeze()
    if gc_threshold is not None:
        # GATEWAY_GC_THRESHOLD. Each socket is a few hundred small objects: with Python's 700, a storm of
        # reconnects set off thousands of young and about ten full collections over millions of objects,
        # most of the storm's CPU (bench/README.md, "The collector").
        gc.set_threshold(*gc_threshold)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws=GatewayWebSocketProtocol,
        ws_per_message_deflate=False,
        # ASGI apps cannot send pings themselves: uvicorn pings, and drops peers that stop answering.
        ws_ping_interval=ping_interval,
        ws_ping_timeout=ping_timeout,
        access_log=False,  # ours (gateway.logs) leaves out query strings: the OAuth callback's code and state
        # X-Forwarded-For/-Proto only from GATEWAY_TRUSTED_PROXIES (uvicorn ignores X-Forwarded-Host; so
        # do we: GATEWAY_PUBLIC_URL decides redirect URIs and Secure).
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=trusted_proxies or [],
        server_header=False,
        log_config=None,
        log_level=log_level,
        **{"ws_max_size": MAX_CLIENT_FRAME, **extra},  # an app of yours may allow bigger client frames
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts, so a taken port is one line and no traceback."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortUnavailable(f"--port {port}: {host}:{port} is already in use (another gateway?); stop it, "
                                  f"or choose another port: --port {port + 1}") from None
        if exc.errno == errno.EACCES:
            raise PortUnavailable(f"--port {port}: not allowed to listen on {host}:{port}; "
                                  "choose a port above 1023, e.g. --port 8000") from None
        raise PortUnavailable(f"--host {host}: cannot listen there ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock
