"""Where a `next` parameter may send the browser after sign-in: our own paths, or hosts the operator allowed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit

DEFAULT_NEXT = "/chat"
# Whatever survives the checks is re-quoted so the Location header stays ASCII.
_LOCATION_SAFE = "/?&=#%-._~:+,;!$'()*"
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")


def _fully_decoded(value: str) -> str | None:
    """Percent-decode until stable (attackers nest encodings); None if it never settles."""
    for _ in range(4):
        decoded = unquote(value, errors="surrogateescape")
        if decoded == value:
            return value
        value = decoded
    return None


def _has_bad_characters(value: str) -> bool:
    for char in value:
        if char in "\\@" or char.isspace():
            return True
        category = unicodedata.category(char)
        if category.startswith(("C", "Z")):  # control, format, surrogate, unassigned, separators
            return True
    return False


def _safe_path(decoded: str) -> bool:
    return (
        decoded.startswith("/")
        and "//" not in decoded
        and not _DOT_SEGMENT.search(decoded.split("?", 1)[0].split("#", 1)[0])
    )


def host_allowed(host: str, port: int | None, allowed: Sequence[str]) -> bool:
    """oauth2-proxy's rules: `.example.com` / `*.example.com` also match subdomains; `:8080` only that
    port, `:*` any port, no port only URLs without an explicit port."""
    for entry in allowed:
        entry = entry.strip().lower()
        name, _, entry_port = entry.partition(":")
        if entry_port == "*":
            port_ok = True
        elif entry_port:
            port_ok = str(port) == entry_port
        else:
            port_ok = port is None
        if not port_ok:
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host == name[1:] or host.endswith(name):
                return True
        elif host == name:
            return True
    return False


def _safe_absolute(value: str, decoded: str, allowed: Sequence[str]) -> bool:
    if not allowed or _has_bad_characters(decoded) or value != decoded:
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return False
    if "//" in parts.path or _DOT_SEGMENT.search(parts.path):
        return False
    return host_allowed(parts.hostname, port, allowed)


def safe_next(value: str | None, allowed_domains: Sequence[str] = (), default: str = DEFAULT_NEXT) -> str:
    """The redirect target for `value`, or `default` (/chat) when it is anything but clearly ours (or allowed)."""
    if not value or len(value) > 2048:
        return default
    decoded = _fully_decoded(value)
    if decoded is None:
        return default
    if value.startswith("/"):
        if _has_bad_characters(decoded) or not _safe_path(decoded):
            return default
        return quote(value, safe=_LOCATION_SAFE)
    if _safe_absolute(value, decoded, allowed_domains):
        return value
    return default
