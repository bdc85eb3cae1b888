"""Who a bearer token belongs to, asked of the provider that issued it. No web framework here."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.errors import Forbidden, InvalidRequest, ProviderUnavailable

log = logging.getLogger("gateway.tokens")

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
TOKEN68 = re.compile(r"\A[A-Za-z0-9\-._~+/]+=*\Z")
MAX_TOKEN_BYTES = 8 * 1024
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_token_syntax(token: str) -> str:
    """Refuse junk before it reaches a provider (httpx refuses non-ASCII header values)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidRequest(f"bearer token longer than {MAX_TOKEN_BYTES} bytes")
    if not TOKEN68.fullmatch(token):  # not match(): "$" also matches before a trailing newline
        raise InvalidRequest("bearer token is not a token68 string")
    return token


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token: safe for logs and cache keys."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Principal:
    subject: str
    name: str
    provider: str
    email: str | None = None
    groups: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    expires_at: float | None = None
    is_bot: bool = False
    claims: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def user_id(self) -> str:
        """Unique across providers: the same subject at two providers is two users."""
        return f"{self.provider}:{self.subject}"

    def public(self) -> dict[str, str]:
        return {"id": self.user_id, "name": self.name}

    def to_dict(self) -> dict[str, Any]:
        """For a shared cache: everything but the token (which a Principal never holds anyway)."""
        return {"subject": self.subject, "name": self.name, "provider": self.provider, "email": self.email,
                "groups": list(self.groups), "scopes": list(self.scopes), "expires_at": self.expires_at,
                "is_bot": self.is_bot, "claims": self.claims}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Principal:
        return cls(subject=str(data["subject"]), name=str(data["name"]), provider=str(data["provider"]),
                   email=data.get("email"), groups=tuple(data.get("groups") or ()),
                   scopes=tuple(data.get("scopes") or ()), expires_at=data.get("expires_at"),
                   is_bot=bool(data.get("is_bot")), claims=dict(data.get("claims") or {}))


def email_unverified(claims: dict[str, Any]) -> bool:
    """The provider says the email is not verified (`email_verified` false, or "false" in any ASCII case).
    No claim says nothing: many providers only list verified emails. The one place that decides."""
    verified = claims.get("email_verified")
    return verified is False or (isinstance(verified, str) and verified.isascii() and verified.lower() == "false")


def display_name(claims: dict[str, Any]) -> str:
    for key in ("name", "preferred_username", "nickname", "email", "sub"):
        if key == "email" and email_unverified(claims):
            continue  # anyone can type one: "ceo@company.example" must not become a name by default
        value = claims.get(key)
        if isinstance(value, str) and value.strip():
            # JSON can spell lone surrogates ("\ud800"): no text to show or send on, so U+FFFD instead.
            return _LONE_SURROGATE.sub("\ufffd", value.strip()[:80])
    return "unknown"


def is_text(value: object) -> bool:
    """A string UTF-8 can carry: JSON's escapes can spell lone surrogates ("\ud800"), which no header,
    frame or JSON answer can send on."""
    return isinstance(value, str) and not _LONE_SURROGATE.search(value)


def checked_subject(subject: str) -> str:
    """The user's id at its provider, refused (403) when it is no text: it could be told from another
    user's only by bytes no frame or header may carry."""
    if not is_text(subject):
        raise Forbidden("the provider's user id for this account is not valid text (a lone UTF-16 surrogate); "
                        "the gateway cannot admit it: ask the provider's administrator")
    return subject


def principal_from_claims(provider: str, claims: dict[str, Any], expires_at: float | None) -> Principal:
    subject = claims.get("sub")
    if subject is None and isinstance(claims.get("username"), str):
        subject = claims["username"]  # RFC 7662 introspection answers may name the user only this way
    if not isinstance(subject, str) or not subject:
        raise ProviderUnavailable("provider's userinfo answer has no 'sub' claim")
    groups = claims.get("groups")
    email = claims.get("email")
    return Principal(
        subject=checked_subject(subject),
        name=display_name(claims),
        provider=provider,
        email=email if is_text(email) else None,  # not text: no address anyone could receive mail at
        groups=tuple(g for g in groups if is_text(g)) if isinstance(groups, list) else (),
        expires_at=expires_at,
        claims=claims,
    )


def retry_after(response: httpx.Response, default: int = 5) -> int:
    value = response.headers.get("retry-after", "")
    # isascii(): str.isdigit() also says yes to "²" and "٣", which int() refuses.
    return max(1, min(int(value), 300)) if value.isascii() and value.isdigit() else default
