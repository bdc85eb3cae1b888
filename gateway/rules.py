"""A route's own rule on top of the gateway's allow-lists (`gateway.require`): groups, scopes, emails.
No web framework here.

Within a kind the entries are alternatives (any listed group, any listed email); scopes are all required.
Several kinds at once must all pass. Groups are read as the allow-lists read them (GATEWAY_GROUPS_CLAIM);
emails compare ignoring ASCII case, and an email the provider marks unverified matches none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.access import AccessPolicy, fold, signed_in_as, verified_email
from gateway.errors import Forbidden, InsufficientScope
from gateway.tokens import Principal


@dataclass(frozen=True)
class Rule:
    groups: frozenset[str] = frozenset()
    scopes: tuple[str, ...] = ()
    emails: frozenset[str] = frozenset()

    @classmethod
    def of(cls, groups: Iterable[str] = (), scopes: Iterable[str] = (), emails: Iterable[str] = ()) -> Rule:
        for kind, values in (("groups", groups), ("scopes", scopes), ("emails", emails)):
            if isinstance(values, str):  # "staff" would be the groups s, t, a and f
                raise TypeError(f"require({kind}=...) takes a list of strings, got the string {values!r}")
        return cls(frozenset(groups), tuple(dict.fromkeys(scopes)), frozenset(fold(email) for email in emails))

    def __bool__(self) -> bool:
        return bool(self.groups or self.scopes or self.emails)

    def check(self, principal: Principal, access: AccessPolicy) -> None:
        """Raise Forbidden (InsufficientScope for scopes, 403 either way) naming who and why not."""
        who = signed_in_as(principal)
        if self.groups and not self.groups & access.groups_of(principal):
            raise Forbidden(f"signed in as {who}, not allowed here: this needs membership of one of the groups "
                            f"{', '.join(sorted(self.groups))}")
        if self.emails and fold(verified_email(principal) or "") not in self.emails:
            raise Forbidden(f"signed in as {who}, not allowed here: this is open to some email addresses only")
        missing = [scope for scope in self.scopes if scope not in principal.scopes]
        if missing:
            raise InsufficientScope(f"signed in as {who}, not allowed here: the token lacks scope {' '.join(missing)}")
