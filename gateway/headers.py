"""Security headers on every HTTP answer: CSP with scripts from our origin only, no framing, no referrer to
other origins (and none at all from the sign-in callback)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(public_url: str, form_targets: Sequence[str] = ()) -> str:
    """Scripts, styles and connections from our origin only. `form_targets`: origins a page's forms may
    post to besides ours (the logout page's form to the provider's end-session endpoint); a route that
    needs them sets its own header, which the middleware keeps."""
    parts = urlsplit(public_url)
    ws_origin = ("wss" if parts.scheme == "https" else "ws") + "://" + parts.netloc
    # connect-src 'self' covers ws: only in CSP Level 3 browsers: name the socket origin too.
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {ws_origin}; frame-ancestors 'none'; base-uri 'none'; "
        + " ".join(["form-action 'self'", *form_targets])
    )


def under(path: str, prefixes: Sequence[str]) -> bool:
    """Whether `path` is one of `prefixes` or below one, by whole segments (/chat, not /chatter)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, public_url: str, paths: Sequence[str] | None = None) -> None:
        """`paths`: only answers under these (the gateway's own routes in an app of yours); None: all."""
        self.app = app
        self.csp = content_security_policy(public_url)
        self.https = urlsplit(public_url).scheme == "https"
        self.paths = paths

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain method handing on the app's own awaitable: no frame of ours kept for a socket's life.
        if scope["type"] != "http" or (self.paths is not None and not under(scope["path"], self.paths)):
            return self.app(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", self.csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with every
                # POST, our own pages' included, and the Origin checks of POST /logout and /auth/refresh
                # could not tell them from a foreign page. Other origins still get no Referer at all; the
                # callback's URL (code, state) is sent nowhere, not even to us.
                callback = scope["path"].startswith("/auth/") and scope["path"].endswith("/callback")
                headers.setdefault("Referrer-Policy", "no-referrer" if callback else "same-origin")
                # Unframable, but for a route whose own CSP names who may frame it (front-channel logout).
                if "frame-ancestors 'none'" in headers["Content-Security-Policy"]:
                    headers.setdefault("X-Frame-Options", "DENY")
                if not scope["path"].startswith("/static/"):
                    headers.setdefault("Cache-Control", "no-store")
                if self.https:
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_wrapper)
