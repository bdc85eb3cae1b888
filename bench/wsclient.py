"""A lean RFC 6455 client for the load generator: thousands of sockets on one core.

Why not websockets' asyncio client for every socket: it spends about 15 µs of Python per received
frame (futures, an assembler, a task per connection), so in the fan-out benchmark the load generator
saturated before the websockets baseline server did and the baseline looked slower than it is. This
client parses server frames in data_received (unmasked, so a few slices per frame), answers pings,
masks its own frames with websockets' C helper, and keeps no task per socket. `probe()` checks it
against the websockets client (same handshake headers, same frames).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from typing import cast

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
OnMessage = Callable[["LeanSocket", bytes], None]


class HandshakeFailed(Exception):
    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"handshake answered {status}")
        self.status = status
        self.head = head


def frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + mask + apply_mask(payload, mask)


class LeanSocket(asyncio.Protocol):
    def __init__(self, request: bytes, key: bytes, on_message: OnMessage | None) -> None:
        self.request = request
        self.expected_accept = base64.b64encode(hashlib.sha1(key + GUID).digest())  # RFC 6455 says SHA-1
        self.on_message = on_message
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()  # the close code (None: no close frame)
        self.buffer = bytearray()
        self.open = False
        self.close_sent = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.received = 0
        self.pongs = 0
        self.transport: asyncio.Transport | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.open and not self._handshake():
            return
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length, start = second & 0x7F, position + 2
            if length == 126:
                if size - position < 4:
                    break
                length, start = int.from_bytes(buffer[position + 2:position + 4], "big"), position + 4
            elif length == 127:
                if size - position < 10:
                    break
                length, start = int.from_bytes(buffer[position + 2:position + 10], "big"), position + 10
            end = start + length
            if end > size:
                break
            position = end
            self._frame(first & 0x0F, bytes(buffer[start:end]))
        if position:
            del buffer[:position]

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    # --- the protocol -----------------------------------------------------------------------------------

    def _handshake(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buffer[:end])
        del self.buffer[:end + 4]
        status = int(head.split(b" ", 2)[1])
        accept = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if status != 101 or accept != self.expected_accept:
            self.opened.set_exception(HandshakeFailed(status, head))
            assert self.transport is not None
            self.transport.close()
            return False
        self.open = True
        self.opened.set_result(None)
        return True

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode == TEXT or opcode == BINARY or opcode == 0:
            self.received += 1
            if self.on_message is not None:
                self.on_message(self, payload)
        elif opcode == PING:
            self._write(frame(PONG, payload))
        elif opcode == PONG:
            self.pongs += 1
        elif opcode == CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode(errors="replace")
            if not self.close_sent:
                self.close_sent = True
                self._write(frame(CLOSE, payload[:2]))
            assert self.transport is not None
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, text: str | bytes) -> None:
        self._write(frame(TEXT, text.encode() if isinstance(text, str) else text))

    def ping(self, payload: bytes = b"") -> None:
        self._write(frame(PING, payload))

    def start_close(self, code: int = 1000) -> None:
        if not self.close_sent and self.open:
            self.close_sent = True
            self._write(frame(CLOSE, code.to_bytes(2, "big")))
        elif not self.open and self.transport is not None:
            self.transport.close()

    async def close(self, code: int = 1000, within: float = 10.0) -> None:
        self.start_close(code)
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), within)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def connect(host: str, port: int, path: str, headers: Sequence[tuple[str, str]] = (),
                  on_message: OnMessage | None = None, within: float = 30.0) -> LeanSocket:
    """Open a socket; HandshakeFailed carries the status of a refusal (401, 429, ...)."""
    key = base64.b64encode(os.urandom(16))
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13",
             *(f"{name}: {value}" for name, value in headers)]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    _, socket = await asyncio.wait_for(
        loop.create_connection(lambda: LeanSocket(request, key, on_message), host, port), within)
    try:
        await asyncio.wait_for(asyncio.shield(socket.opened), within)
    except BaseException:
        socket.abort()
        raise
    return socket
