"""Secrets never reach the logs (issue: headers and logs): a full sign-in, refresh, chat and logout on a
real uvicorn with every logger at DEBUG, then each secret the run handled is searched for in every record.

What counts as a secret: the authorization code, `state` and PKCE verifier of the sign-in; the access,
refresh and ID tokens the provider issued (first and refreshed); every cookie value the gateway set; the
tokens programs sent in a header or a subprotocol entry; the client secret and the gateway's own key.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.asyncio.client import connect

from gateway.security import CHAT_PROTOCOL, K8S_TOKEN_PREFIX, REFRESH_HEADER
from tests.conftest import SECRET, FakeIdP
from tests.security.conftest import Live
from tests.test_chat_socket import joined, next_frame

pytestmark = pytest.mark.anyio

CLIENT_SECRET = "s3cret"  # tests.conftest.make_settings


class Issued:
    """Wraps the FakeIdP's token endpoint: answers refresh grants, adds a refresh token to every answer,
    and keeps what went over the wire (the PKCE verifier in, the tokens out)."""

    def __init__(self, idp: FakeIdP) -> None:
        self.idp = idp
        self.original = idp._token
        self.secrets: list[str] = []
        idp.mock.routes["token"].mock(side_effect=self.token)

    def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("code_verifier"):
            self.secrets.append(form["code_verifier"])
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.secrets:
                return httpx.Response(400, json={"error": "invalid_grant"})
            body: dict[str, Any] = {"access_token": self.idp.issue_token("alice"), "token_type": "Bearer",
                                    "expires_in": 3600, "id_token": self.idp.id_token("alice", None)}
        else:
            answer = self.original(request)
            if answer.status_code != 200:
                return answer
            body = answer.json()
        body["refresh_token"] = secrets.token_urlsafe(32)
        self.secrets += [body["access_token"], body["refresh_token"], body["id_token"]]
        return httpx.Response(200, json=body)


def _set_cookie_values(response: httpx.Response) -> list[str]:
    values = []
    for header in response.headers.get_list("set-cookie"):
        value = header.split(";", 1)[0].split("=", 1)[1].strip('"')
        if value:
            values.append(value)
    return values


def _everything_logged(record: logging.LogRecord) -> str:
    parts = [str(record.msg), repr(record.args)]
    try:
        parts.append(record.getMessage())
    except (TypeError, ValueError):
        pass
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    return "\n".join(parts)


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # What `gateway serve --log-level debug` does to uvicorn's loggers, and DEBUG everywhere else.
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level:
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def test_no_secret_of_a_full_session_is_logged(live: Live, idp: FakeIdP,
                                                     every_logger_at_debug: pytest.LogCaptureFixture) -> None:
    issued = Issued(idp)
    found: list[str] = [CLIENT_SECRET, SECRET]
    base = f"http://{live.address}"
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as browser:
        # Sign in: the login-state cookie, state, code, verifier, tokens, the token and refresh cookies.
        start = await browser.get("/login/idp", params={"next": "/chat"})
        found += _set_cookie_values(start)
        found.append(parse_qs(urlsplit(start.headers["location"]).query)["state"][0])
        callback = idp.authorize(start.headers["location"], "alice")
        found.append(parse_qs(urlsplit(callback).query)["code"][0])
        done = await browser.get(callback)
        assert done.status_code == 303
        found += _set_cookie_values(done)
        # Refresh: new tokens and cookies.
        refreshed = await browser.post("/auth/refresh", headers={"Origin": live.origin, REFRESH_HEADER: "1"})
        assert refreshed.status_code == 204
        found += _set_cookie_values(refreshed)
        cookie = f"gateway_token={browser.cookies['gateway_token']}"

        # Chat: a browser with the cookie, a bot with a header token, one with a subprotocol token.
        bot_token, k8s_token = idp.issue_token("bot"), idp.issue_token("k8s")
        entry = K8S_TOKEN_PREFIX + base64.urlsafe_b64encode(k8s_token.encode()).decode().rstrip("=")
        found += [bot_token, k8s_token, entry]
        async with connect(f"ws://{live.address}/ws/lobby", additional_headers={"Cookie": cookie},
                           origin=live.origin, subprotocols=[CHAT_PROTOCOL],  # type: ignore[arg-type,list-item]
                           logger=logging.getLogger("tests.client")) as page, \
                connect(f"ws://{live.address}/ws/lobby", additional_headers={"Authorization": f"Bearer {bot_token}"},
                        logger=logging.getLogger("tests.client")) as bot, \
                connect(f"ws://{live.address}/ws/lobby", subprotocols=[entry, CHAT_PROTOCOL],  # type: ignore[list-item]
                        logger=logging.getLogger("tests.client")) as program:
            for ws in (page, bot, program):
                await joined(ws)
            await page.send(json.dumps({"type": "message", "text": "hello", "client_id": "c1"}))
            assert (await next_frame(bot))["text"] == "hello"
            assert (await next_frame(program))["text"] == "hello"

        # Logout with the page's CSRF token.
        chat = await browser.get("/chat")
        csrf = re.search(r'name="csrf" value="([^"]+)"', chat.text)
        assert csrf is not None
        logout = await browser.post("/logout", data={"csrf": csrf.group(1)})
        assert logout.status_code < 400
    found += issued.secrets
    assert len(issued.secrets) == 7  # the verifier, then access, refresh and ID tokens twice

    # The test's own clients (httpx, httpcore, websockets) log what they send from this thread: those
    # records are not the gateway's. Everything else is: uvicorn, the app, authlib, the provider calls.
    ours = threading.get_ident()
    records = [r for r in every_logger_at_debug.records if r.thread != ours]
    assert any(r.levelno == logging.DEBUG for r in records)  # DEBUG really was captured
    assert any(r.name == "gateway.access" for r in records)
    leaks = {(secret[:12] + "…", record.name, record.getMessage()[:200])
             for record in records for secret in found if secret in _everything_logged(record)}
    assert leaks == set()
