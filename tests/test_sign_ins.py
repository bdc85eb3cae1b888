"""The hub's index of sockets by browser sign-in (gateway.chat.sign_ins): what a logout at the provider, a
sign-out everywhere or a refresh reaches, on the embedded broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.chat.history import StoreUnavailable
from gateway.chat.hub import Hub, Member
from gateway.chat.sign_ins import SignIn
from tests.test_hub import make_hub, user


def signed_in(hub: Hub, name: str, session_id: str, sid: str = "", auth_time: float = 100.0) -> Member:
    member = hub.member("lobby", user(name))
    member.sign_in = SignIn("idp", session_id, sid, auth_time)
    return member


@pytest.mark.anyio
async def test_ending_sign_ins_closes_exactly_the_sockets_named(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3")
    a1, a2 = signed_in(hub, "ann", "s-1", "p-1"), signed_in(hub, "ann", "s-2", "p-2", auth_time=300.0)
    bot = hub.member("lobby", user("ann"))  # a bearer token: no sign-in
    bob = signed_in(hub, "bob", "s-3", "p-1")  # a provider session is named by its sid, whoever signed in
    for member in (a1, a2, bot, bob):
        await hub.join(member)
    await hub.end_sign_ins("ended", provider="idp", sid="p-1")
    assert [m.outbox.close_code for m in (a1, a2, bot, bob)] == [4401, None, None, 4401]
    await hub.end_sign_ins("ended", user_id="idp:ann", before=200.0)  # a2 signed in later: stays
    assert a2.outbox.close_code is None and bot.outbox.close_code is None
    await hub.end_sign_ins("ended", session_id="s-2")
    assert a2.outbox.close_code == 4401 and bot.outbox.close_code is None
    await hub.leave(a2)
    assert hub.sockets_of_sign_in("s-2") == 0 and hub.sockets_of_sign_in("s-1") == 1
    await hub.stop()


@pytest.mark.anyio
async def test_a_refresh_reaches_the_sockets_of_that_sign_in_only(tmp_path: Path) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3")
    mine, other = signed_in(hub, "ann", "s-1"), signed_in(hub, "ann", "s-2")
    got: list[tuple[str, str]] = []
    mine.on_refresh = lambda sealed: got.append(("mine", sealed))
    other.on_refresh = lambda sealed: got.append(("other", sealed))
    for member in (mine, other):
        await hub.join(member)
    await hub.refreshed("s-1", "sealed-value")
    assert got == [("mine", "sealed-value")]
    await hub.stop()


@pytest.mark.anyio
async def test_with_the_broker_unreachable_a_session_end_still_closes_this_instances_sockets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = await make_hub(tmp_path / "h.sqlite3")
    member = signed_in(hub, "ann", "s-1", "p-1")
    await hub.join(member)

    async def unreachable(event: dict[str, Any]) -> None:
        raise StoreUnavailable("Redis: ConnectionError")

    monkeypatch.setattr(hub.broker, "announce", unreachable)
    await hub.end_sign_ins("ended", provider="idp", sid="p-1")
    assert member.outbox.close_code == 4401
    await hub.stop()
