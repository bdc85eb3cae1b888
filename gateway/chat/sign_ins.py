"""Which sockets belong to which browser sign-in: what a logout at the provider (back-channel or
front-channel), a sign-out everywhere or a refresh reaches. No web framework here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


@dataclass(frozen=True)
class SignIn:
    """The browser sign-in a socket was opened with (its cookie): what ends it and what refreshes it."""

    provider: str
    session_id: str  # the gateway's own, as in the session cookie
    sid: str  # the provider's session ("" when its ID token named none)
    auth_time: float


class Signed(Protocol):
    @property
    def sign_in(self) -> SignIn | None: ...


def provider_session(provider: str, sid: str) -> str:
    return f"{provider}\0{sid}"  # no session id holds a NUL (gateway.cookies.PROVIDER_ID)


M = TypeVar("M", bound=Signed)


class SignInIndex(Generic[M]):
    """Sockets by the gateway's session id and by the provider's (provider, sid)."""

    def __init__(self) -> None:
        self._members: dict[str, set[M]] = {}

    @staticmethod
    def _keys(member: M) -> list[str]:
        sign_in = member.sign_in
        if sign_in is None:
            return []
        return [sign_in.session_id, *([provider_session(sign_in.provider, sign_in.sid)] if sign_in.sid else [])]

    def add(self, member: M) -> None:
        for key in self._keys(member):
            self._members.setdefault(key, set()).add(member)

    def discard(self, member: M) -> None:
        for key in self._keys(member):
            members = self._members.get(key)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._members[key]

    def of_session(self, session_id: str) -> list[M]:
        return list(self._members.get(session_id, ()))

    def ended(self, event: dict[str, Any], users: dict[str, set[M]]) -> list[M]:
        """The sockets an `_end` event names: one sign-in (`session_id`), a provider's session (`provider`
        and `sid`), or every sign-in of `user_id` made up to `before` (from `users`, the hub's index)."""
        if isinstance(event.get("session_id"), str):
            return self.of_session(event["session_id"])
        if isinstance(event.get("provider"), str) and isinstance(event.get("sid"), str):
            return list(self._members.get(provider_session(event["provider"], event["sid"]), ()))
        before = event.get("before")
        if isinstance(event.get("user_id"), str) and isinstance(before, int | float):
            found: Iterable[M] = users.get(event["user_id"], ())
            return [m for m in found if m.sign_in is not None and m.sign_in.auth_time <= before]
        return []
