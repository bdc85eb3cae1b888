"""Forward-auth for other apps (nginx `auth_request`, Traefik ForwardAuth), like oauth2-proxy's
/oauth2/auth: the same credentials, cache and allow-lists as the chat, answered with headers."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.access import fold, verified_email
from gateway.errors import CredentialError
from gateway.routes.pages import gateway_of
from gateway.security import authenticate, challenge_headers

router = APIRouter()


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
        "X-Auth-Request-User": principal.name,
        "X-Auth-Request-Preferred-Username": str(principal.claims.get("preferred_username", principal.name)),
        "X-Auth-Request-Subject": principal.user_id,
        "X-Auth-Request-Email": principal.email or "",
        "X-Auth-Request-Groups": ",".join(sorted(gateway.access.groups_of(principal))),
        "Cache-Control": "no-store",
    }
    # Header values must be single-line ASCII: percent-encode anything else a provider put in a name.
    safe = {k: v if v.isascii() and v.isprintable() else quote(v, safe=" @,./:-_+") for k, v in headers.items()}
    return Response(status_code=202, headers=safe)
