"""Client frames of protocol gateway.chat.v1 (docs/protocol.md): decoding and validation."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MAX_TEXT_CHARS = 2000
MAX_CLIENT_ID_CHARS = 64


class FrameError(Exception):
    """A frame the server cannot use. `close_code` set: the connection ends; else an `error` frame."""

    def __init__(self, code: str, message: str, close_code: int | None = None,
                 client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.client_id = client_id  # the refused message's, when it had a valid one: the client marks it


@dataclass(frozen=True)
class SendMessage:
    text: str
    client_id: str | None


@dataclass(frozen=True)
class Resume:
    after: str


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Older:
    """`history {before}`: the page of messages just older than `before`."""

    before: str


@dataclass(frozen=True)
class Edit:
    """`edit {id, text}` (text: the new text) or `delete {id}` (text None): one's own message, within the window."""

    id: str
    text: str | None


@dataclass(frozen=True)
class Read:
    """`read {id}`: the user has seen the room up to this message (unread counts, gateway.chat.rooms)."""

    id: str


@dataclass(frozen=True)
class Typing:
    """`typing`: the user is typing in this room now (told to the others, never stored)."""


ClientFrame = SendMessage | Resume | Ping | Older | Edit | Read | Typing


def _unicode(value: str, field: str) -> str:
    """JSON escapes can spell lone surrogates ("\\ud800"): valid JSON, but no text to store or send on."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FrameError("bad_frame", f'"{field}" holds a lone surrogate escape; send Unicode text') from None
    return value


def _client_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID_CHARS:
        raise FrameError("bad_frame", f"client_id must be a string of 1-{MAX_CLIENT_ID_CHARS} characters")
    return _unicode(value, "client_id")


def _text(value: Any, kind: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FrameError("bad_frame", f'"{kind}" needs a non-empty "text"')
    if len(value) > MAX_TEXT_CHARS:
        raise FrameError("too_big", f"text is limited to {MAX_TEXT_CHARS} characters")
    return _unicode(value, "text")


def _message_id(data: dict[str, Any], field: str, needed: str) -> str:
    """`data[field]`, a message id: a non-empty string, else `bad_frame` with `needed` (what to send)."""
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise FrameError("bad_frame", needed)
    return _unicode(value, field)


def decode_frame(text: str) -> ClientFrame:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays nested deeper than the parser goes
        raise FrameError("bad_frame", "frames must be JSON text", close_code=1007) from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise FrameError("bad_frame", 'a frame is a JSON object with a "type"')
    kind = data["type"]
    if kind == "ping":
        return Ping()
    if kind == "resume":
        return Resume(_message_id(data, "after", '"resume" needs "after": the last message id you have'))
    if kind == "history":
        return Older(_message_id(data, "before", '"history" needs "before": the oldest message id you have'))
    if kind == "typing":
        return Typing()
    if kind == "read":
        return Read(_message_id(data, "id", '"read" needs "id": the newest message id you have shown'))
    if kind in ("edit", "delete"):
        message_id = _message_id(data, "id", f'"{kind}" needs "id": the id of your message')
        if kind == "delete":
            return Edit(message_id, None)
        return Edit(message_id, _text(data.get("text"), kind))
    if kind == "message":
        client_id = _client_id(data.get("client_id"))
        try:
            return SendMessage(_text(data.get("text"), kind), client_id)
        except FrameError as exc:
            exc.client_id = client_id
            raise
    raise FrameError("bad_frame", f"unknown frame type {kind[:32]!r}; "
                                  "expected message, edit, delete, read, typing, resume, history or ping")


# One encoder for every frame: json.dumps with arguments builds a new JSONEncoder on each call.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(frame: dict[str, Any]) -> str:
    return _encoder.encode(frame)


def error_frame(code: str, message: str, client_id: str | None = None) -> str:
    """`client_id`: the refused message's (docs/protocol.md), so a client knows which one to mark or resend."""
    frame = {"type": "error", "code": code, "message": message}
    if client_id is not None:
        frame["client_id"] = client_id
    return encode(frame)


def rate_limited(message: str, retry_after: float, client_id: str | None = None) -> str:
    """`retry_after`: seconds, sent as whole milliseconds (at least 1); `client_id`: the refused message's."""
    frame: dict[str, object] = {"type": "error", "code": "rate_limited", "message": message,
                                "retry_after": max(1, math.ceil(retry_after * 1000))}
    if client_id is not None:
        frame["client_id"] = client_id
    return encode(frame)
