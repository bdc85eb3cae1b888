"""Fuzzing a real uvicorn gateway over raw sockets: generated malformed handshakes (bad request lines,
bad Sec-WebSocket-Key/Version, junk credentials and Origins, huge headers, odd paths) and, after a valid
handshake, malformed frames (bad opcodes, RSV bits, unmasked, lying lengths, invalid UTF-8, oversized,
nested JSON). The server must answer every request below 500, end every socket it ends with a close
frame and a contract code, log no ERROR and no traceback, and still answer /healthz afterwards.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from gateway.security import CHAT_PROTOCOL, K8S_TOKEN_PREFIX
from tests.conftest import FakeIdP
from tests.security.conftest import ALLOWED_ORIGIN, Live, StartGateway
from tests.security.strategies import authorizations, frames, header_values

LIVE = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TIMEOUT = 5.0
GOOD_KEY = base64.b64encode(b"0123456789abcdef").decode()
# The codes a server-ended socket may carry (docs/protocol.md, "Closing"), plus 1002: websockets' own answer to a
# protocol violation (bad opcode, RSV bits, unmasked or oversized control frames, orphan continuations).
SERVER_CLOSE_CODES = {1000, 1002, 1003, 1007, 1009, 4408, 4429}


@dataclass
class Target:
    live: Live
    token: str  # a valid bearer token at the FakeIdP
    caplog: pytest.LogCaptureFixture


@pytest.fixture
def target(start_gateway: StartGateway, idp: FakeIdP, caplog: pytest.LogCaptureFixture) -> Iterator[Target]:
    caplog.set_level(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gateway", "asyncio"):
        caplog.set_level(logging.INFO, logger=name)
    # Limits up, so generated requests reach the deep paths instead of stopping at a 429.
    with start_gateway(failed_auth_burst=100_000, failed_auth_rate=1000.0, max_sockets_per_user=100_000,
                       message_rate=1000.0, message_burst=1000) as live:
        yield Target(live, idp.issue_token("fuzzer"), caplog)
        assert httpx.get(f"http://{live.address}/healthz", timeout=TIMEOUT).status_code == 200
    assert _problems(caplog.records) == []  # including what was logged after the last example


def _problems(records: list[logging.LogRecord]) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()[:300]}" for r in records
            if r.levelno >= logging.ERROR or r.exc_info or "Traceback" in r.getMessage()]


def _open(target: Target) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", target.live.port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The HTTP answer's head (empty when the server closed without one) and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _status(head: bytes) -> int:
    line = head.split(b"\r\n", 1)[0]
    assert line.startswith(b"HTTP/1."), line[:80]
    return int(line.split(b" ")[1])


# --- handshakes -----------------------------------------------------------------------------------------

PATHS = ["/ws/lobby", "/ws/..%2F", "/ws/..%2Fetc", "/ws/%00", "/ws/%2e%2e", "/ws/%2e", "/ws/lobby%00", "/ws/%ff",
         "/ws/lo%20by", "/ws/" + "a" * 65, "/ws/lobby?x=1&y=%00", "/ws/lobby/extra", "/ws/", "/ws", "//ws/lobby",
         "/ws/lobby#frag", "/ws/\\..\\", "/ws/%252e%252e", "*", "http://127.0.0.1/ws/lobby", "ws/lobby", "",
         "/ws/" + "b" * 9000, "/healthz", "/chat", "/auth/idp/callback?code=x&state=y", "/login?next=%2F%2Fevil",
         "/ws/\xe9t\xe9", "/ws/\x00", "/ws/a b"]
paths = st.one_of(st.just("/ws/lobby"), st.sampled_from(PATHS), st.text(max_size=30).map(lambda s: "/ws/" + s),
                  st.binary(max_size=20).map(lambda b: "/ws/" + b.decode("latin-1")))
clean_paths = st.one_of(st.just("/ws/lobby"), st.sampled_from([p for p in PATHS if p.isascii() and p.isprintable()
                                                             and " " not in p and p.startswith("/")]))
methods = st.sampled_from(["GET"] * 12 + ["POST", "HEAD", "OPTIONS", "CONNECT", "G\x00T", "get", ""])
versions = st.sampled_from(["HTTP/1.1"] * 12 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", "HTTP/9", ""])


def _k8s(raw: str) -> str:
    return K8S_TOKEN_PREFIX + base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


# Mostly bytes a header value may hold (HTAB, SP, VCHAR, obs-text), so that requests get past the HTTP
# parser to the handshake and the app; sometimes anything at all, for the parser itself.
FIELD_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
field_values = st.binary(max_size=200).map(lambda raw: bytes(FIELD_BYTES[b % len(FIELD_BYTES)] for b in raw))
wire_values = st.one_of(*[field_values.map(lambda raw: raw.decode("latin-1"))] * 4, header_values)


def header_choices(token: str, clean: bool) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Headers of a handshake. The handshake's own headers are right most of the time (else websockets
    answers 400 before the app sees anything); credentials, Origin and the rest vary freely. `clean`:
    every value is one the HTTP parser takes, so the request reaches the handshake and the app."""
    field = field_values.map(lambda raw: raw.decode("latin-1"))

    def one(name: str, right: str | None, *odd: str, junk: st.SearchStrategy[str] = wire_values,
            usually_right: bool = False) -> st.SearchStrategy[list[tuple[str, str]]]:
        if clean:
            junk = field
        value = st.one_of(st.sampled_from(odd), junk) if odd else junk
        kinds = {"missing": st.just([]), "odd": value.map(lambda v: [(name, v)]),
                 "repeated": st.lists(value, min_size=2, max_size=3).map(lambda vs: [(name, v) for v in vs]),
                 "right": st.just([(name, right)] if right is not None else [])}
        weights = ["missing", "odd", "repeated"] + ["right"] * (20 if usually_right else 2 if right else 0)
        return st.sampled_from(weights).flatmap(kinds.__getitem__)

    parts = [
        one("Host", "127.0.0.1", "evil.test", "", usually_right=True),
        one("Upgrade", "websocket", "WebSocket", "h2c", "websocket, h2c", usually_right=True),
        one("Connection", "Upgrade", "upgrade, keep-alive", "close", "keep-alive", usually_right=True),
        one("Sec-WebSocket-Key", GOOD_KEY, "", "short", base64.b64encode(b"x" * 17).decode(), "====",
            usually_right=True),
        one("Sec-WebSocket-Version", "13", "8", "13, 8", "0", "99999999999999999999", usually_right=True),
        one("Authorization", f"Bearer {token}", "Bearer " + "a" * 9000, "Bearer", "Basic Zm9vOmJhcg==",
            junk=authorizations),
        one("Cookie", None, "gateway_token=junk", "gateway_token=" + "A" * 5000, "a=b; gateway_token=gAAAAAB; c",
            "gateway_login=" + "x" * 100),
        one("Origin", ALLOWED_ORIGIN, "null", "http://evil.test", ""),
        one("Sec-WebSocket-Protocol", CHAT_PROTOCOL, _k8s(token) + ", " + CHAT_PROTOCOL, K8S_TOKEN_PREFIX + "!!",
            ", ,,", junk=st.text(max_size=40).map(_k8s) | wire_values),
        one("Sec-WebSocket-Extensions", None, "permessage-deflate", "permessage-deflate; client_max_window_bits=99",
            "x-unknown"),
        st.lists(st.tuples(st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
                                   min_size=1, max_size=20), field if clean else wire_values), max_size=3),
    ]
    if not clean:
        parts += [one("Content-Length", None, "0", "-1", "abc"),
                  one("Transfer-Encoding", None, "identity", "chunked, chunked")]
    return st.tuples(*parts).map(lambda groups: [header for group in groups for header in group])


@dataclass(frozen=True)
class Handshake:
    method: str
    path: str
    version: str
    headers: list[tuple[str, str]]
    extra: bytes  # huge headers, many headers, or a bare LF line

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.path} {self.version}".encode("utf-8", "surrogateescape")]
        lines += [f"{name}: {value}".encode("utf-8", "surrogateescape") for name, value in self.headers]
        return b"\r\n".join(lines) + b"\r\n" + self.extra + b"\r\n"


extras = st.sampled_from([b""] * 12 + [b"X-Big: " + b"y" * 9000 + b"\r\n", b"X-Big: " + b"z" * 70_000 + b"\r\n",
                          b"".join(b"X-%d: v\r\n" % i for i in range(300)), b"Bare: lf\nX: y\r\n",
                          b" folded-continuation\r\n", b"NoColon\r\n", b"\x00\x01\x02: \xff\r\n"])


def requests(token: str) -> st.SearchStrategy[bytes]:
    raw = st.sampled_from([
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2's preface
        b"PRI /ws/lobby HTTP/1.1\r\n\r\n",  # its first half: the parser waits for the rest
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
        b"\r\n\r\n", b"GET /ws/lobby\r\n\r\n", b"GET /ws/lobby HTTP/1.1\n\n", b"\x00" * 64,
    ])
    # Half the requests pass the HTTP parser (to test the handshake and the app), half test the parser.
    clean = st.builds(Handshake, st.just("GET"), clean_paths, st.just("HTTP/1.1"), header_choices(token, True),
                      st.just(b""))
    anything = st.builds(Handshake, methods, paths, versions, header_choices(token, False), extras)
    return st.one_of(clean.map(Handshake.encode), clean.map(Handshake.encode), anything.map(Handshake.encode),
                     raw, st.binary(max_size=200).map(lambda junk: junk + b"\r\n\r\n"))


@LIVE
@given(data=st.data())
def test_generated_handshakes_never_get_a_500(target: Target, data: st.DataObject) -> None:
    request = data.draw(requests(target.token))
    logged = len(target.caplog.records)
    with _open(target) as sock:
        sock.sendall(request)
        sock.settimeout(0.5)
        try:
            head, _ = _read_head(sock)
        except TimeoutError:
            # Incomplete in the parser's eyes (it waits for more bytes): once the client is done
            # sending, the server must end the connection rather than hang on.
            sock.settimeout(TIMEOUT)
            sock.shutdown(socket.SHUT_WR)
            try:
                head, _ = _read_head(sock)
            except TimeoutError:
                pytest.fail(f"the connection hung after {request[:300]!r}")
    if head:  # an unparseable request may just be dropped: that is an answer too
        assert _status(head) < 500, head[:200]
    event(f"status {_status(head)}" if head else "closed without an answer")  # --hypothesis-show-statistics
    assert _problems(target.caplog.records[logged:]) == []


# --- frames after a valid handshake ---------------------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True,
          length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if masked:
        head += MASK
        payload = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + payload


PING = frame(0x1, b'{"type":"ping"}')

# (bytes to send, "close" when it is a client close, "junk" when the server may be left mid-frame)
Piece = tuple[bytes, str]
json_frames = frames.map(lambda text: (frame(0x1, text.encode("utf-8", "surrogatepass")), ""))
pieces: st.SearchStrategy[Piece] = st.one_of(
    json_frames, json_frames, json_frames,
    st.binary(max_size=200).map(lambda raw: (frame(0x1, raw), "")),  # text frames, mostly invalid UTF-8
    st.binary(max_size=200).map(lambda raw: (frame(0x2, raw), "")),  # binary
    st.integers(4097, 6000).map(lambda n: (frame(0x1, b"x" * n), "")),  # oversized
    st.sampled_from([5000, 1 << 20, (1 << 63) - 1]).map(lambda n: (frame(0x1, b"", length=n), "")),  # lying length
    st.binary(max_size=130).map(lambda raw: (frame(0x9, raw), "")),  # ping, >125 bytes is illegal
    st.binary(max_size=20).map(lambda raw: (frame(0xA, raw), "")),  # unsolicited pong
    st.binary(max_size=20).map(lambda raw: (frame(0x0, raw), "")),  # orphan continuation
    st.tuples(st.sampled_from([3, 4, 5, 6, 7, 0xB, 0xC, 0xF]), st.binary(max_size=10)).map(
        lambda t: (frame(t[0], t[1]), "")),  # reserved opcodes
    st.tuples(st.integers(1, 7), json_frames).map(lambda t: (frame(0x1, b'{"type":"ping"}', rsv=t[0]), "")),
    st.just((frame(0x1, b'{"type":"ping"}', masked=False), "")),  # clients must mask
    st.just((frame(0x1, b'{"type":', fin=False) + frame(0x0, b'"ping"}'), "")),  # fragmented, fine
    st.just((frame(0x9, b"x", fin=False), "")),  # fragmented control frame
    st.tuples(st.sampled_from([1000, 1001, 999, 1004, 1005, 1006, 1015, 2999, 3000, 4999, 5000]),
              st.binary(max_size=30)).map(lambda t: (frame(0x8, struct.pack("!H", t[0]) + t[1]), "close")),
    st.just((frame(0x8, b"\x03"), "close")),  # a one-byte close payload
    st.binary(min_size=1, max_size=40).map(lambda raw: (raw, "junk")),  # not even a frame
)


class ServerFrames:
    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock, self.buffer = sock, buffered

    def _need(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def next(self) -> tuple[int, bytes]:
        first, second = self._need(2)
        assert not second & 0x80, "server frames are never masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._need(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._need(8))[0]
        return first & 0x0F, self._need(size)


def _finish(sock: socket.socket, server: ServerFrames, last_kind: str) -> str:
    """Read until the pong (alive), a close frame (its code is checked) or the end of the connection."""
    while True:
        try:
            opcode, payload = server.next()
        except EOFError:
            assert last_kind in ("junk", "close"), "the server dropped the socket without a close frame (1006)"
            return "eof"
        except TimeoutError:
            pytest.fail(f"neither a pong nor a close within {TIMEOUT} s")
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if last_kind != "close":  # after a client close, the server echoes whatever code it got
                assert code in SERVER_CLOSE_CODES, (code, payload[2:])
            return f"closed {code}"
        if opcode == 0x1 and json.loads(payload).get("type") == "pong":
            return "alive"


@LIVE
@given(sequence=st.lists(pieces, min_size=1, max_size=4))
@example(sequence=[(frame(0x1, b"[" * 3000), "")])
@example(sequence=[(frame(0x1, b'{"type":"message","text":"\\ud800","client_id":"s1"}'), "")])
@example(sequence=[(frame(0x1, b'{"type":"resume","after":"99999999999999999999-1"}'), "")])
@example(sequence=[(frame(0x1, b"\xff\xfe"), "")])
def test_generated_frames_after_a_valid_handshake(target: Target, sequence: list[Piece]) -> None:
    logged = len(target.caplog.records)
    request = Handshake("GET", "/ws/fuzz", "HTTP/1.1", [
        ("Host", target.live.address), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", GOOD_KEY), ("Sec-WebSocket-Version", "13"),
        ("Authorization", f"Bearer {target.token}")], b"")
    with _open(target) as sock:
        sock.sendall(request.encode())
        head, rest = _read_head(sock)
        assert _status(head) == 101, head[:200]
        # Cut the sequence after a close or junk: nothing the server reads after those is meaningful.
        last_kind = ""
        for data, kind in sequence:
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server already closed (after an earlier bad frame): fine, checked below
            last_kind = kind
            if kind:
                break
        try:
            if not last_kind:
                sock.sendall(PING)
            elif last_kind == "junk":
                sock.shutdown(socket.SHUT_WR)  # the junk may announce a payload: end it, rather than wait
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        try:
            outcome = _finish(sock, ServerFrames(sock, rest), last_kind)
        except ConnectionResetError:
            outcome = "reset"
        assert outcome != "reset" or last_kind in ("junk", "close"), sequence
        event(outcome)
    assert _problems(target.caplog.records[logged:]) == [], sequence
