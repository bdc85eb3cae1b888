"""Who may use the gateway once signed in (403: valid but not allowed): allow-lists, required
scopes and per-room rules. No web framework here.

- The allow-lists (emails, email domains, users, groups) are alternatives: a principal matching any
  entry of any of them is admitted; when all four are empty, everyone signed in is.
- Required scopes apply on top, to everyone (403 insufficient_scope).
- A room rule (groups or users) applies on top of both, to that room only.
- Bots (client-credentials tokens) go through the same lists: they have no email, so they are admitted
  by their client id in the users list, or by a groups claim their token carries.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.errors import Forbidden, InsufficientScope
from gateway.tokens import Principal, email_unverified, is_text

if TYPE_CHECKING:
    from gateway.config import Settings

log = logging.getLogger("gateway.access")

# \A...\Z, and callers use fullmatch: "$" also matches before a final newline ("staff\n" is no "staff").
ROOM_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
# Only ASCII letters fold: str.lower() maps the Kelvin sign to "k", so "\u212aernel.org" would pass
# for "kernel.org". Anything non-ASCII compares exactly (and so fails closed).
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LIST_SEPARATORS = re.compile(r"[\s,]+")
# Where providers put a user name a person signs in with (GitHub's login arrives as preferred_username).
USER_NAME_CLAIMS = ("preferred_username", "username")


def fold(value: str) -> str:
    return value.translate(_ASCII_FOLD)


def room_key(room: str) -> str:
    """Rules are looked up ignoring case and with '-' as '_': env names cannot tell them apart, and a
    rule for `staff` must not be dodged by joining `Staff` (fail closed: it covers both)."""
    return fold(room).replace("-", "_")


def claim_values(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """A list claim, or a string of space- or comma-separated values. `name` is a claim name, or a
    dotted path into nested objects (Keycloak's `realm_access.roles`) when no claim has that exact name
    (Auth0's namespaced `https://example.com/roles` is a plain name with dots)."""
    value: Any = claims.get(name)
    if name not in claims:
        value = claims
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return frozenset()
            value = value[part]
    if isinstance(value, str):
        return frozenset(item for item in _LIST_SEPARATORS.split(value) if item)
    if isinstance(value, list | tuple):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


def email_domain(email: str) -> str | None:
    local, at, domain = email.rpartition("@")
    return fold(domain) if at and local and domain else None


def verified_email(principal: Principal) -> str | None:
    """The principal's email, unless the provider says it is not verified (anyone can type one)."""
    return None if email_unverified(principal.claims) else principal.email


def signed_in_as(principal: Principal) -> str:
    """Who is signed in, for the refusal message."""
    if principal.is_bot:
        return f"bot {principal.subject[:80]}"
    if principal.email and principal.email != principal.name:
        return f"{principal.name} ({principal.email[:120]})"
    return principal.name


class UserList:
    """Subjects or user names; `<provider>:<value>` limits an entry to one provider. Subjects compare
    exactly, user names ignoring ASCII case."""

    def __init__(self, entries: Iterable[str], providers: Iterable[str]) -> None:
        known = set(providers)
        self._subjects: set[tuple[str | None, str]] = set()
        self._names: set[tuple[str | None, str]] = set()
        for entry in entries:
            prefix, colon, rest = entry.partition(":")
            # Only a configured provider's name qualifies: "auth0|123" or "urn:x" stay whole values.
            provider, value = (prefix, rest) if colon and prefix in known and rest else (None, entry)
            self._subjects.add((provider, value))
            self._names.add((provider, fold(value)))

    def __bool__(self) -> bool:
        return bool(self._subjects)

    def admits(self, principal: Principal) -> bool:
        providers = (None, principal.provider)  # entries for any provider, and for this one
        if any((provider, principal.subject) in self._subjects for provider in providers):
            return True
        names = {fold(value) for key in USER_NAME_CLAIMS
                 if isinstance(value := principal.claims.get(key), str) and value}
        return any((provider, name) in self._names for provider in providers for name in names)


@dataclass(frozen=True)
class RoomRule:
    groups: frozenset[str]
    users: UserList

    def __bool__(self) -> bool:
        return bool(self.groups or self.users)


class AccessPolicy:
    def __init__(self, *, emails: Iterable[str] = (), email_domains: Iterable[str] = (),
                 users: Iterable[str] = (), groups: Iterable[str] = (), groups_claim: str = "groups",
                 required_scopes: Iterable[str] = (),
                 rooms: Mapping[str, tuple[Iterable[str], Iterable[str]]] | None = None,
                 providers: Iterable[str] = ()) -> None:
        """`rooms` maps a room name to (allowed groups, allowed users); `providers` are the configured
        provider names, which may qualify a user entry."""
        providers = tuple(providers)
        self.emails = frozenset(fold(email) for email in emails)
        self.email_domains = frozenset(fold(domain).removeprefix("@") for domain in email_domains)
        self.users = UserList(users, providers)
        self.groups = frozenset(groups)
        self.groups_claim = groups_claim
        self.required_scopes = tuple(required_scopes)
        self.rooms = {room_key(room): RoomRule(frozenset(room_groups), UserList(room_users, providers))
                      for room, (room_groups, room_users) in (rooms or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(emails=settings.allowed_emails, email_domains=settings.allowed_email_domains,
                   users=settings.allowed_users, groups=settings.allowed_groups,
                   groups_claim=settings.groups_claim, required_scopes=settings.required_scopes,
                   rooms={name: (rule.allowed_groups, rule.allowed_users) for name, rule in settings.rooms.items()},
                   providers=settings.providers)

    @property
    def restricted(self) -> bool:
        return bool(self.emails or self.email_domains or self.users or self.groups)

    def groups_of(self, principal: Principal) -> frozenset[str]:
        found = claim_values(principal.claims, self.groups_claim)
        if self.groups_claim == "groups":
            found |= frozenset(principal.groups)  # GitHub's teams, which are no claim
        return frozenset(group for group in found if is_text(group))  # "\ud800" matches no rule, goes nowhere

    def admits(self, principal: Principal) -> bool:
        """On the gateway's allow-lists (any of them), or no allow-list is set."""
        if not self.restricted:
            return True
        email = verified_email(principal)
        if email is not None and (fold(email) in self.emails or email_domain(email) in self.email_domains):
            return True
        return self.users.admits(principal) or bool(self.groups & self.groups_of(principal))

    def admits_to(self, principal: Principal, room: str) -> bool:
        rule = self.rooms.get(room_key(room))
        if not rule:
            return True
        return rule.users.admits(principal) or bool(rule.groups & self.groups_of(principal))

    def check(self, principal: Principal, room: str | None = None) -> None:
        """Raise Forbidden (InsufficientScope for scopes) naming who is signed in and why not."""
        who = signed_in_as(principal)
        if not self.admits(principal):
            why = "this account is not on the gateway's allow-list"
            if principal.email and verified_email(principal) is None and (self.emails or self.email_domains):
                why += " (the provider says its email is not verified)"
            elif principal.is_bot:
                why += " (a bot is admitted by its client id in GATEWAY_ALLOWED_USERS)"
            self._refuse(Forbidden(f"signed in as {who}, not allowed here: {why}"), principal, room)
        missing = [scope for scope in self.required_scopes if scope not in principal.scopes]
        if missing:
            self._refuse(InsufficientScope(f"signed in as {who}, not allowed here: the token lacks scope "
                                           f"{' '.join(missing)}"), principal, room)
        if room is not None and not self.admits_to(principal, room):
            self._refuse(Forbidden(f"signed in as {who}, not allowed in #{room}: the room is open to some "
                                   f"groups and users only"), principal, room)

    @staticmethod
    def _refuse(error: Forbidden, principal: Principal, room: str | None) -> NoReturn:
        log.info("access refused to %s%s: %s", principal.user_id, f" in {room}" if room else "", error.code)
        raise error
