"""A path with a control character never reaches a route: Starlette's patterns end in `$`, which also
matches before a final newline, so `/healthz%0A` used to be `/healthz` (and `/ws/lobby%0A` a socket)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.conftest import FakeIdP


@pytest.mark.parametrize("path", ["/healthz%0A", "/healthz%0D%0A", "/readyz%0a", "/chat%00", "/login%7F",
                                  "/auth/session%09", "/static/chat.js%0A"])
def test_a_path_with_a_control_character_is_400(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400
    assert answer.json()["error"] == "bad_path"
    assert answer.headers["x-content-type-options"] == "nosniff"  # inside the security headers


def test_the_same_paths_without_it_still_work(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/chat.js").status_code == 200


def test_a_socket_path_with_a_control_character_is_refused_before_the_handshake(client: TestClient,
                                                                                 idp: FakeIdP) -> None:
    headers = {"Authorization": f"Bearer {idp.issue_token('alice')}"}
    with pytest.raises(WebSocketDisconnect), client.websocket_connect(
            "/ws/lobby%0A", headers=headers, subprotocols=["gateway.chat.v1"]):
        pass
    with client.websocket_connect("/ws/lobby", headers=headers, subprotocols=["gateway.chat.v1"]) as ws:
        assert ws.receive_json()["type"] == "welcome"
