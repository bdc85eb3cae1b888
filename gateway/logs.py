"""Logging: our own access log (method, path, status; never the query string, which carries the OAuth
callback's code and state) and the process-wide log setup."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
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
        token = request_id.set(incoming if _INCOMING_ID.fullmatch(incoming) else os.urandom(8).hex())

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


# What no log line may carry raw: C0 and C1 controls (line ends, NUL, ESC and CSI, which start ANSI escape
# sequences), DEL, the Unicode line and paragraph separators, and the bidi controls that reorder what a
# reader sees. Any of them can come from a client: a path (%0a), a callback's error=, a header.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# JSON escapes C0 controls itself; these it leaves raw, and str.splitlines() and terminals act on them.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_INDENT = "    "


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as Python escapes (\\n, \\x1b, \\u2028)."""
    return _UNSAFE.sub(_escaped, text)


class TextFormatter(logging.Formatter):
    """One record, one line, whoever logged it (us, uvicorn, a library): control characters and ANSI
    escapes are escaped, never written raw. A traceback or stack follows on lines indented by four spaces,
    so no line but a record's first starts at the margin, whatever an exception's message holds."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [escape_controls(self.formatMessage(record))]
        # Not record.exc_text: another handler may have cached it there unescaped.
        if record.exc_info:
            lines.append(self._indented(self.formatException(record.exc_info)))
        elif record.exc_text:
            lines.append(self._indented(record.exc_text))
        if record.stack_info:
            lines.append(self._indented(self.formatStack(record.stack_info)))
        return "\n".join(lines)

    @staticmethod
    def _indented(text: str) -> str:
        return "\n".join(_INDENT + escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "request_id": getattr(record, "request_id", "-"), "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # They can only stand inside JSON strings, where \\uXXXX means the same character.
        return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(entry, ensure_ascii=False))


def setup_logging(level: str = "info", fmt: Literal["text", "json"] = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The demo provider (Flask/werkzeug) logs every request in colour; keep only its warnings.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
