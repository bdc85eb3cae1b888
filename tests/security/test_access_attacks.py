"""Access control end to end, against a real uvicorn (403 "valid but not allowed", close 4403):
allow-list tricks, the groups claim, required scopes, room rules at the handshake and on the page, and
access lost on an open socket — by the session watch and by the per-message check."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from joserfc import jwt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.authenticator import Authenticator
from tests.conftest import CLIENT_ID, ISSUER, FakeIdP
from tests.security.conftest import Live, StartGateway, handshake

pytestmark = pytest.mark.anyio

STAFF_ONLY = {"staff-room": {"allowed_groups": ["staff"]}}


def bearer(token: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {token}"}}


def detail(answer: httpx.Response) -> str:
    text: str = json.loads(answer.content)["detail"]
    return text


async def next_frame(ws: ClientConnection, seconds: float = 5) -> dict[str, Any]:
    """The next frame that is not a presence change."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), seconds))
        if frame["type"] not in ("presence", "join", "leave"):
            return frame


async def joined(ws: ClientConnection) -> list[dict[str, Any]]:
    """Welcome and history: the messages a socket is shown on joining."""
    welcome, history = await next_frame(ws), await next_frame(ws)
    assert (welcome["type"], history["type"]) == ("welcome", "history")
    messages: list[dict[str, Any]] = history["messages"]
    return messages


async def until_closed(ws: ClientConnection, seconds: float = 5) -> list[dict[str, Any]]:
    frames = []
    with pytest.raises(ConnectionClosed):
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
    return frames


async def post(ws: ClientConnection, text: str, client_id: str) -> dict[str, Any]:
    """Send a message; returns its ack."""
    await ws.send(json.dumps({"type": "message", "text": text, "client_id": client_id}))
    while (frame := await next_frame(ws))["type"] != "ack":
        pass
    return frame


async def history_of(live: Live, room: str, token: str) -> list[str]:
    async with connect(live.ws(room), **bearer(token)) as ws:
        return [message["text"] for message in await joined(ws)]


@asynccontextmanager
async def browser(live: Live, idp: FakeIdP, sub: str, **claims: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in on the live gateway through the whole flow, as `sub` with these claims."""
    async with httpx.AsyncClient(base_url=f"http://{live.address}", follow_redirects=False) as client:
        start = await client.get("/login/idp")
        done = await client.get(idp.authorize(start.headers["location"], sub, **claims))
        assert done.status_code == 303, done.text
        yield client


@pytest.fixture
def no_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session watch sleeps for an hour: only the per-message check can notice a change."""
    monkeypatch.setattr(Authenticator, "recheck_at", lambda self, principal, credentials: time.time() + 3600)


# --- allow-lists at the handshake ---------------------------------------------------------------------

DOMAIN_TRICKS = [
    ("mallory@evil-example.com", 403),
    ("mallory@example.com.evil.net", 403),
    ("mallory@sub.example.com", 403),
    ("mallory@example.com@evil.net", 403),
    ('"mallory@example.com"@evil.net', 403),
    ("mallory@\u212aernel.org", 403),  # a Kelvin sign for the K of an allowed domain
    ("MALLORY@EXAMPLE.COM", 101),  # case does not matter
    ("mallory@Kernel.org", 101),
]


async def test_email_domain_tricks_are_403(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(allowed_email_domains=["example.com", "kernel.org"]) as live:
        for email, status in DOMAIN_TRICKS:
            answer = await handshake(live.ws(), **bearer(idp.issue_token("mallory", email=email)))
            assert answer.status_code == status, email
            if status == 403:
                assert detail(answer).startswith(f"signed in as Mallory ({email}), not allowed here")
                assert "www-authenticate" not in answer.headers  # the token is fine: no challenge
                assert "sec-websocket-accept" not in answer.headers


async def test_an_unverified_email_is_403(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(allowed_emails=["boss@example.com"]) as live:
        forged = idp.issue_token("mallory", email="boss@example.com", email_verified=False)
        answer = await handshake(live.ws(), **bearer(forged))
        assert answer.status_code == 403 and "not verified" in detail(answer)
        real = idp.issue_token("boss", email="Boss@example.com", email_verified=True)
        assert (await handshake(live.ws(), **bearer(real))).status_code == 101


async def test_users_match_subjects_not_display_names(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(allowed_users=["idp:carol"]) as live:
        assert (await handshake(live.ws(), **bearer(idp.issue_token("carol")))).status_code == 101
        impostor = idp.issue_token("mallory", name="carol", email="carol@example.com", nickname="carol")
        assert (await handshake(live.ws(), **bearer(impostor))).status_code == 403


async def test_the_groups_claim_is_configurable_down_a_dotted_path(start_gateway: StartGateway,
                                                                    idp: FakeIdP) -> None:
    with start_gateway(allowed_groups=["chat"], groups_claim="realm_access.roles") as live:
        member = idp.issue_token("rita", realm_access={"roles": ["offline_access", "chat"]})
        assert (await handshake(live.ws(), **bearer(member))).status_code == 101
        wrong_claim = idp.issue_token("gus", groups=["chat"])  # "groups" is not the configured claim
        assert (await handshake(live.ws(), **bearer(wrong_claim))).status_code == 403
        smuggled = idp.issue_token("sam", **{"realm_access.roles": "x", "realm_access": {"roles": "chat"}})
        assert (await handshake(live.ws(), **bearer(smuggled))).status_code == 403  # the exact name wins


async def test_required_scopes_give_403_insufficient_scope(start_gateway: StartGateway, idp: FakeIdP) -> None:
    # userinfo validation sees no scopes: every token is refused, with the right challenge.
    with start_gateway(required_scopes=["chat"]) as live:
        answer = await handshake(live.ws(), **bearer(idp.issue_token("alice")))
        assert answer.status_code == 403
        assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
        assert "lacks scope chat" in detail(answer)


def access_jwt(idp: FakeIdP, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "iat": now, "exp": now + 300, **claims}
    return jwt.encode({"alg": "RS256", "kid": "k1", "typ": "at+jwt"}, body, idp.key)


async def test_scopes_and_bots_with_jwt_validation(start_gateway: StartGateway, idp: FakeIdP) -> None:
    providers = {"idp": {"issuer": ISSUER, "client_id": CLIENT_ID, "validation": "jwt"}}
    with start_gateway(providers=providers, allow_bots=True, allowed_email_domains=["example.com"],
                       allowed_users=["idp:robot"], required_scopes=["chat"],
                       rooms={"ops": {"allowed_users": ["robot"]}}) as live:
        person = {"sub": "alice", "azp": CLIENT_ID, "email": "alice@example.com"}
        assert (await handshake(live.ws(), **bearer(access_jwt(idp, **person, scope="openid chat")))).status_code == 101
        answer = await handshake(live.ws(), **bearer(access_jwt(idp, **person, scope="openid")))
        assert answer.status_code == 403 and 'error="insufficient_scope"' in answer.headers["www-authenticate"]
        # Bots: no email, so the domain admits none; the users list admits "robot" by its client id.
        robot = access_jwt(idp, aud=CLIENT_ID, client_id="robot", scope="chat")
        intruder = access_jwt(idp, aud=CLIENT_ID, client_id="intruder", scope="chat")
        assert (await handshake(live.ws(), **bearer(robot))).status_code == 101
        assert (await handshake(live.ws("ops"), **bearer(robot))).status_code == 101
        answer = await handshake(live.ws(), **bearer(intruder))
        assert answer.status_code == 403 and detail(answer).startswith("signed in as bot intruder")
        # The room rule admits the bot, not the person.
        assert (await handshake(live.ws("ops"), **bearer(access_jwt(idp, **person, scope="chat")))).status_code == 403


# --- room rules: the handshake, the history, the page, the probe ------------------------------------------

async def test_a_restricted_rooms_history_is_not_readable(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(rooms=STAFF_ONLY) as live:
        insider, outsider = idp.issue_token("ida", groups=["staff"]), idp.issue_token("otto")
        async with connect(live.ws("staff-room"), **bearer(insider)) as ws:
            await joined(ws)
            await post(ws, "the launch code is 0000", "c1")
        for alias in ("staff-room", "Staff-Room", "STAFF_ROOM", "staff_room"):
            answer = await handshake(live.ws(alias), **bearer(outsider))
            assert answer.status_code == 403, alias  # an HTTP answer: no welcome, no history frame
            assert "sec-websocket-accept" not in answer.headers
            assert detail(answer).startswith(f"signed in as Otto (otto@example.com), not allowed in #{alias}")
            assert "launch" not in answer.text
        # A resume names no room: from the lobby it reads the lobby.
        async with connect(live.ws("lobby"), **bearer(outsider)) as ws:
            assert await joined(ws) == []
            await ws.send(json.dumps({"type": "resume", "after": "0-0"}))
            resumed = await next_frame(ws)
            assert resumed["type"] == "history" and resumed["messages"] == []
        assert await history_of(live, "staff-room", insider) == ["the launch code is 0000"]


async def test_the_chat_page_is_403_naming_who_is_signed_in(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(allowed_email_domains=["example.com"], rooms=STAFF_ONLY) as live:
        async with browser(live, idp, "mallory", email="mallory@evil.test",
                           name="<script>alert(1)</script>") as outsider:
            page = await outsider.get("/chat")
            assert page.status_code == 403
            assert "signed in as &lt;script&gt;alert(1)&lt;/script&gt; (mallory@evil.test), not allowed here" \
                in page.text
            assert "<script>alert" not in page.text
            assert 'action="/logout"' in page.text and 'name="csrf"' in page.text and 'href="/login"' in page.text
            session = (await outsider.get("/auth/session")).json()
            assert session["authenticated"] is True and session["allowed"] is False
            assert session["reason"] == "forbidden" and "not allowed here" in session["reason_text"]
            assert session["user"]["name"] == "<script>alert(1)</script>"
            # The logout button works from the refusal page.
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            out = await outsider.post("/logout", data={"csrf": csrf})
            assert out.status_code in (200, 303) and "Logout refused" not in out.text
        async with browser(live, idp, "carol", email="carol@example.com") as member:
            assert (await member.get("/chat")).status_code == 200
            page = await member.get("/chat/Staff-Room")
            assert page.status_code == 403
            assert "signed in as Carol (carol@example.com), not allowed in #Staff-Room" in page.text
            allowed = (await member.get("/auth/session")).json()
            assert allowed["authenticated"] is True and allowed["allowed"] is True and allowed["reason"] is None
            in_room = (await member.get("/auth/session", params={"room": "staff-room"})).json()
            assert in_room["allowed"] is False and "#staff-room" in in_room["reason_text"]
        async with browser(live, idp, "ida", email="ida@example.com", groups=["staff"]) as staff:
            assert (await staff.get("/chat/staff-room")).status_code == 200


# --- access lost while connected ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Ivy", "\u00dcn\u00efc\u00f6d\u00e9 " * 20])  # the close reason is bytes-capped
async def test_an_open_socket_whose_user_loses_the_group_closes_with_4403(start_gateway: StartGateway,
                                                                          idp: FakeIdP, name: str) -> None:
    with start_gateway(allowed_groups=["staff"], validation_cache_ttl=0.5, invalid_cache_ttl=0) as live:
        token = idp.issue_token("ivy", name=name, groups=["staff"])
        async with connect(live.ws(), **bearer(token)) as ws:
            await joined(ws)
            idp.tokens[token]["groups"] = []  # removed from the group at the provider
            started = time.monotonic()
            frames = await until_closed(ws)
            assert ws.close_code == 4403
            assert frames[-1]["type"] == "error" and frames[-1]["code"] == "forbidden"
            assert frames[-1]["message"].startswith("signed in as")
            assert time.monotonic() - started < 3
        assert (await handshake(live.ws(), **bearer(token))).status_code == 403


async def test_losing_a_rooms_group_closes_that_room_only(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(rooms=STAFF_ONLY, validation_cache_ttl=0.5, invalid_cache_ttl=0) as live:
        token = idp.issue_token("ida", groups=["staff"])
        async with connect(live.ws("staff-room"), **bearer(token)) as room, \
                connect(live.ws("lobby"), **bearer(token)) as lobby:
            await joined(room)
            await joined(lobby)
            idp.tokens[token]["groups"] = ["alumni"]
            frames = await until_closed(room)
            assert room.close_code == 4403 and frames[-1]["code"] == "forbidden"
            assert "#staff-room" in frames[-1]["message"]
            await asyncio.sleep(0.6)  # the lobby's watch has re-checked too, and kept it
            await lobby.send(json.dumps({"type": "ping"}))
            assert await next_frame(lobby) == {"type": "pong"}


@pytest.mark.usefixtures("no_watch")
async def test_a_message_after_losing_access_is_refused_and_not_stored(start_gateway: StartGateway,
                                                                       idp: FakeIdP) -> None:
    with start_gateway(rooms=STAFF_ONLY, validation_cache_ttl=0.5, invalid_cache_ttl=0) as live:
        leaver, stayer = idp.issue_token("lee", groups=["staff"]), idp.issue_token("sue", groups=["staff"])
        async with connect(live.ws("staff-room"), **bearer(leaver)) as ws:
            await joined(ws)
            await post(ws, "before", "c1")
            idp.tokens[leaver]["groups"] = []
            await asyncio.sleep(0.7)  # the cached answer lapses; the watch is asleep
            await ws.send(json.dumps({"type": "message", "text": "after", "client_id": "c2"}))
            frames = await until_closed(ws)
            assert ws.close_code == 4403
            assert [f["type"] for f in frames if f["type"] in ("ack", "message")] == []
            assert frames[-1]["type"] == "error" and frames[-1]["code"] == "forbidden"
        assert await history_of(live, "staff-room", stayer) == ["before"]


@pytest.mark.usefixtures("no_watch")
async def test_a_message_after_revocation_is_refused_with_4401(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(validation_cache_ttl=0.5, invalid_cache_ttl=0) as live:
        token, other = idp.issue_token("rex"), idp.issue_token("sue")
        async with connect(live.ws(), **bearer(token)) as ws:
            await joined(ws)
            del idp.tokens[token]
            await asyncio.sleep(0.7)
            await ws.send(json.dumps({"type": "message", "text": "revoked", "client_id": "c1"}))
            frames = await until_closed(ws)
            assert ws.close_code == 4401 and frames[-1]["code"] == "token_expired"
        assert "revoked" not in await history_of(live, "lobby", other)


@pytest.mark.usefixtures("no_watch")
async def test_provider_trouble_lets_messages_through(start_gateway: StartGateway, idp: FakeIdP) -> None:
    with start_gateway(allowed_groups=["staff"], validation_cache_ttl=0.5, invalid_cache_ttl=0) as live:
        token = idp.issue_token("kim", groups=["staff"])
        async with connect(live.ws(), **bearer(token)) as ws:
            await joined(ws)
            idp.mock.routes["userinfo"].mock(return_value=httpx.Response(503))
            await asyncio.sleep(0.7)
            ack = await post(ws, "still here", "c1")  # not the user's fault: stored and acked
            assert ack["client_id"] == "c1"
            await ws.send(json.dumps({"type": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}
