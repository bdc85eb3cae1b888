"""Two cookies of one gateway name in a request are refused, never resolved.

A browser sends both when a sibling host tossed one in (`Domain=<parent>`, or another Path) beside ours;
Starlette's `request.cookies` keeps the last, and which one comes last is the attacker's to arrange. So the
raw Cookie header is counted here, before any route reads a cookie: 400 on HTTP and on the socket's
handshake, every copy expired in the answer (so that a reload starts clean), and a message saying what
to do. Other names (an analytics cookie set on two domains, say) are none of our business.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Iterable
from urllib.parse import urlsplit

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("gateway.auth")

GATEWAY_COOKIE = re.compile(r"\A(?:__Host-|__Secure-)?gateway_[a-z]+(?:\.[0-9]{1,2})?\Z")
PATH_SEGMENT = re.compile(r"/[A-Za-z0-9._~-]{1,64}")
ROUTE_PATHS = ("/", "/auth", "/auth/refresh", "/logout")  # where the gateway's own cookies live


def duplicated(headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    """Gateway cookie names that occur more than once, in every Cookie header line together. Names are cut
    out as Starlette's cookie_parser cuts them (split on ';', up to the first '=', str.strip() of the
    latin-1 text), so none it would read as ours escapes the count; values are never decoded or copied."""
    seen: set[str] = set()
    twice: set[str] = set()
    for key, value in headers:
        if key != b"cookie":  # ASGI header names are lower-case
            continue
        for chunk in value.split(b";"):
            end = chunk.find(b"=")
            if end < 0 or b"gateway_" not in chunk[:end]:
                continue
            name = chunk[:end].decode("latin-1").strip()
            if GATEWAY_COOKIE.fullmatch(name):
                (twice if name in seen else seen).add(name)
    return sorted(twice)


def _parent_domains(host: str) -> list[str]:
    """The host and each parent a sibling could have named in `Domain=` (not the top-level label)."""
    if not re.fullmatch(r"[a-z0-9.-]+", host) or host.replace(".", "").isdigit() or "." not in host:
        return []
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def _paths(request_path: str) -> list[str]:
    """The paths a tossed copy may have used: ours, and each prefix of this request's path."""
    paths = list(ROUTE_PATHS)
    prefix = ""
    for segment in PATH_SEGMENT.findall(request_path)[:4]:
        prefix += segment
        if prefix not in paths and request_path.startswith(prefix):
            paths.append(prefix)
    return paths


class DuplicateCookieGuard:
    def __init__(self, app: ASGIApp, templates: Jinja2Templates, public_url: str) -> None:
        self.app = app
        self.templates = templates
        parts = urlsplit(public_url)
        self.secure = parts.scheme == "https"
        self.domains = _parent_domains((parts.hostname or "").lower())

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain method handing on the app's own awaitable: no frame of ours kept for a socket's life.
        names = duplicated(scope["headers"]) if scope["type"] in ("http", "websocket") else []
        if not names:
            return self.app(scope, receive, send)
        return self._refuse(scope, receive, send, names)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, names: list[str]) -> None:
        log.warning("refused a request carrying two cookies named %s: one may have been set by another host "
                    "under the same domain", ", ".join(names))
        if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        response = self._refusal(scope, names)
        self._expire(response, names, scope["path"])
        await response(scope, receive, send)

    def _refusal(self, scope: Scope, names: list[str]) -> Response:
        message = (f"This request carries two cookies named {', '.join(names)}: another site under the same "
                   "domain may have set one to take over your session. Both have been removed: sign in again. "
                   "If this keeps happening, tell the administrator.")
        if scope["type"] == "http" and "text/html" in Request(scope).headers.get("accept", ""):
            return self.templates.TemplateResponse(Request(scope), "error.html",
                                                   {"title": "Conflicting cookies", "message": message},
                                                   status_code=400)
        # `authenticated` for the chat page's session probe: it then sends the browser to sign in.
        return JSONResponse({"error": "duplicate_cookie", "detail": message, "authenticated": False},
                            status_code=400)

    def _expire(self, response: Response, names: list[str], request_path: str) -> None:
        for name in names:
            host_only = name.startswith("__Host-")  # only ever Path=/ and without Domain
            for path in ["/"] if host_only else _paths(request_path):
                for domain in [None] if host_only else [None, *self.domains]:
                    response.delete_cookie(name, path=path, domain=domain, secure=self.secure, httponly=True,
                                           samesite="lax")
