"""Logging: our own access log (method, path, status; never the query string, which carries the OAuth
callback's code and state) and the process-wide log setup."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import Literal

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access = logging.getLogger("gateway.access")
request_id: ContextVar[str] = ContextVar("request_id", default="-")
_INCOMING_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")


class RequestIdFilter(logging.Filter):
    """Every log line of a request carries its id (X-Request-ID when a proxy sent a sane one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        token = request_id.set(incoming if _INCOMING_ID.fullmatch(incoming) else uuid.uuid4().hex[:16])

        async def send_wrapper(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                status.append(message["status"])
                MutableHeaders(scope=message).append("X-Request-ID", request_id.get())
            elif message["type"] == "websocket.accept":
                status.append(101)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = scope.get("client")
            method = scope.get("method", "WS")
            access.info(
                '%s "%s %s" %s %.1fms',
                client[0] if client else "-", method, scope["path"], status[0] if status else "-",
                (time.perf_counter() - started) * 1000,
            )
            request_id.reset(token)


class DropQueryStrings(logging.Filter):
    """uvicorn logs each WebSocket handshake with its query string; keep only the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(
                a.split("?", 1)[0] if isinstance(a, str) and a.startswith("/") else a for a in record.args
            )
        return True


class DropCodeVerifier(logging.Filter):
    """authlib logs the PKCE code verifier of every sign-in at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Using code_verifier"))


# Filters on the loggers that write the records: they hold whatever level or handlers operators configure.
_FILTERS = {
    "uvicorn.error": DropQueryStrings,
    # Off in server.py, but a handler attached to it (a log config, pytest) turns it on, queries and all.
    "uvicorn.access": DropQueryStrings,
    "authlib.integrations.base_client.sync_app": DropCodeVerifier,
}


def quiet_uvicorn_queries() -> None:
    """Keep the OAuth callback's code and state, and the PKCE verifier, out of third-party log records."""
    for name, kind in _FILTERS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "request_id": getattr(record, "request_id", "-"), "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The demo provider (Flask/werkzeug) logs every request in colour; keep only its warnings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
