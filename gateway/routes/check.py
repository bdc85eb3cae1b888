"""Forward-auth for other apps (nginx `auth_request`, Traefik ForwardAuth), like oauth2-proxy's
/oauth2/auth: the same credentials, cache and allow-lists as the chat, answered with headers.

Every X-Auth-Request-* value is percent-encoded UTF-8 (`header_value`), `%` and `,` included, so a value
decodes to exactly what the provider sent and the groups list splits at its commas only. The email is sent
only when the provider does not say it is unverified (`gateway.access.verified_email`, as the allow-lists
judge it); otherwise the header is empty.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.access import fold, verified_email
from gateway.errors import CredentialError
from gateway.routes.pages import gateway_of
from gateway.security import authenticate, challenge_headers

router = APIRouter()


# Printable ASCII stays as it is, but for "%" (so every "%XX" is an escape) and "," (the groups separator).
_HEADER_SAFE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) not in "%,")


def header_value(value: str) -> str:
    """`value` as a header value that percent-decodes (RFC 3986, not form decoding: "+" is a plus) to exactly
    `value`: UTF-8 bytes outside printable ASCII, "%" and "," as %XX, spaces at either end as %20 (HTTP
    would trim them)."""
    # surrogatepass: a lone surrogate a provider's JSON spelled still gets bytes of its own, never a 500.
    encoded = quote(value.encode("utf-8", "surrogatepass"), safe=_HEADER_SAFE)
    inner = encoded.strip(" ")
    if not inner:
        return "%20" * len(encoded)
    lead, trail = len(encoded) - len(encoded.lstrip(" ")), len(encoded) - len(encoded.rstrip(" "))
    return "%20" * lead + inner + "%20" * trail


def _listed(value: str | None) -> set[str]:
    return {item.strip() for item in (value or "").split(",") if item.strip()}


@router.get("/auth/check")
async def check(request: Request) -> Response:
    """202 with X-Auth-Request-User/-Email/-Groups; 401 (sign in); 403 (signed in, not allowed); 503.
    `?allowed_groups=a,b` and `?allowed_emails=x@y` narrow it further for one protected app."""
    gateway = gateway_of(request)
    try:
        # The request is for another host: it never carries our host-only session cookie.
        principal = await authenticate(request, gateway, sibling=True)
    except CredentialError as error:
        return Response(status_code=error.status, headers=challenge_headers(error))
    # Like GATEWAY_ALLOWED_GROUPS and _EMAILS: groups exactly as the provider sends them, emails ignoring
    # ASCII case, and an email the provider marks unverified matches nothing.
    groups = _listed(request.query_params.get("allowed_groups"))
    emails = {fold(email) for email in _listed(request.query_params.get("allowed_emails"))}
    if groups and not groups & gateway.access.groups_of(principal):
        return Response(status_code=403)
    if emails and fold(verified_email(principal) or "") not in emails:
        return Response(status_code=403)
    headers = {
        "X-Auth-Request-User": header_value(principal.name),
        "X-Auth-Request-Preferred-Username": header_value(
            str(principal.claims.get("preferred_username", principal.name))),
        "X-Auth-Request-Subject": header_value(principal.user_id),
        # Never an email the provider marks unverified: anyone can type one (the allow-lists ignore it too).
        "X-Auth-Request-Email": header_value(verified_email(principal) or ""),
        "X-Auth-Request-Groups": ",".join(header_value(group)
                                          for group in sorted(gateway.access.groups_of(principal))),
        "Cache-Control": "no-store",
    }
    return Response(status_code=202, headers=headers)
