"""Logs (GATEWAY_LOG_FORMAT): one JSON object per line, or readable text; a request id on every line of a
request (X-Request-ID, echoed; a sane incoming one reused); our access log never shows a query string."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from gateway.logs import AccessLogMiddleware
from tests.conftest import FakeIdP, Logs, SignIn

GENERATED_ID = re.compile(r"^[0-9a-f]{16}$")


def json_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = buffer.getvalue().splitlines()
    assert lines
    return [json.loads(line) for line in lines]  # every line, or this raises


def access_lines(entries: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["logger"] == "gateway.access" and f' {path}" ' in e["message"]]


def test_json_format_every_line_is_an_object_with_a_request_id(logs: Logs, client: TestClient,
                                                               sign_in: SignIn) -> None:
    buffer = logs("json")
    assert sign_in(client).status_code == 303
    client.get("/healthz")
    logging.getLogger("gateway").info("outside any request")

    entries = json_lines(buffer)
    for entry in entries:
        assert {"ts", "level", "logger", "request_id", "message"} <= entry.keys()
    assert {e["request_id"] for e in entries if e["message"] == "outside any request"} == {"-"}
    assert len(access_lines(entries, "/healthz")) == 1


def test_every_line_of_a_request_carries_its_id(logs: Logs, client: TestClient, sign_in: SignIn) -> None:
    buffer = logs("json")
    done = sign_in(client)
    assert done.status_code == 303

    entries = json_lines(buffer)
    request_id = done.headers["x-request-id"]
    assert GENERATED_ID.match(request_id)
    own = [e for e in entries if e["request_id"] == request_id]
    assert [e["logger"] for e in own] == ["gateway.auth", "gateway.access"]  # "signed in", then the access line
    assert own[0]["message"] == "signed in at idp"
    assert '"GET /auth/idp/callback" 303 ' in own[1]["message"]
    # The request before it (the start of the sign-in) had an id of its own.
    (start,) = access_lines(entries, "/login/idp")
    assert start["request_id"] not in ("-", request_id)


def test_text_format_is_readable_and_carries_the_request_id(logs: Logs, client: TestClient) -> None:
    buffer = logs("text")
    answer = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    (line,) = [line for line in buffer.getvalue().splitlines() if "gateway.access" in line]
    assert "INFO" in line and "[trace-42]" in line and '"GET /healthz" 200' in line
    assert answer.headers["x-request-id"] == "trace-42"


@pytest.mark.parametrize("incoming", ["abc-123", "Req_7.x", "0af7651916cd43dd8448eb211c80319c", "a" * 64])
def test_a_sane_incoming_request_id_is_reused_and_echoed(logs: Logs, client: TestClient, incoming: str) -> None:
    buffer = logs("json")
    answer = client.get("/healthz", headers={"X-Request-ID": incoming})
    assert answer.headers["x-request-id"] == incoming
    (line,) = access_lines(json_lines(buffer), "/healthz")
    assert line["request_id"] == incoming


def test_without_an_incoming_id_each_request_gets_a_fresh_one(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(GENERATED_ID.match(i) for i in ids)


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    logging.getLogger("gateway.test").info("inside the app")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.anyio
@pytest.mark.parametrize("incoming", [b"evil\r\nX-Injected: 1", b"line\nbreak", b"a" * 65, b"", b"has space",
                                      b'"quoted"', b"caf\xc3\xa9", b"{json}", b"%0a"])
async def test_a_malicious_incoming_request_id_is_replaced(logs: Logs, incoming: bytes) -> None:
    """Raw ASGI, so that even bytes an HTTP client would refuse to send reach the middleware."""
    buffer = logs("json")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": [(b"x-request-id", incoming)],
             "client": ("127.0.0.1", 5000), "query_string": b""}
    await AccessLogMiddleware(_ok)(scope, receive, send)  # type: ignore[arg-type]

    echoed = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert GENERATED_ID.match(echoed)
    entries = json_lines(buffer)
    assert {e["request_id"] for e in entries} == {echoed}
    assert "Injected" not in buffer.getvalue()



def test_the_access_log_never_shows_the_callbacks_code_or_state(logs: Logs, client: TestClient,
                                                                idp: FakeIdP) -> None:
    buffer = logs("json")
    start = client.get("/login/idp", params={"next": "/chat/secret-room?x=1"})
    callback = idp.authorize(start.headers["location"])
    assert client.get(callback).status_code == 303

    query = parse_qs(urlsplit(callback).query)
    text = buffer.getvalue()
    assert query["code"][0] not in text
    assert query["state"][0] not in text
    assert "secret-room" not in text
    for line in access_lines(json_lines(buffer), "/auth/idp/callback") + access_lines(json_lines(buffer),
                                                                                      "/login/idp"):
        assert "?" not in line["message"]
