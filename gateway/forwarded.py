"""A one-time warning when requests carry X-Forwarded-For but GATEWAY_TRUSTED_PROXIES is unset: the gateway
then ignores the header (rightly), and every client looks like the proxy (one user's failed attempts earn
everyone a 429; a proxy on the same machine makes every client a loopback peer for /metrics)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("gateway.proxy")


class UntrustedForwardedForWarning:
    """Installed only when no proxy is trusted; after its one warning it only passes requests on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.warned = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain method handing on the app's own awaitable: no frame of ours kept for a socket's life.
        if not self.warned and scope["type"] in ("http", "websocket"):
            if any(name == b"x-forwarded-for" for name, _ in scope.get("headers") or ()):
                self.warned = True
                client = scope.get("client")
                peer = client[0] if client else "a peer"
                log.warning("a request from %s carries X-Forwarded-For, but GATEWAY_TRUSTED_PROXIES is unset: the "
                            "header is ignored and every client looks like the proxy; if %s is your reverse proxy, "
                            "set GATEWAY_TRUSTED_PROXIES=%s (this warning is logged once)", peer, peer, peer)
        return self.app(scope, receive, send)
