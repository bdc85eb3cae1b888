"""Logout tokens (OpenID Connect Back-Channel Logout 1.0) as a provider signs them, genuine or hostile."""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from gateway.logout_token import BACKCHANNEL_EVENT
from tests.conftest import FakeIdP

DROP = object()  # a claim to leave out


def logout_claims(idp: FakeIdP, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": idp.issuer, "aud": idp.client_id, "iat": int(time.time()),
                              "jti": secrets.token_urlsafe(12), "events": {BACKCHANNEL_EVENT: {}}, "sid": "sid-1"}
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not DROP}


def logout_token(idp: FakeIdP, key: RSAKey | OctKey | None = None, header: dict[str, Any] | None = None,
                 **overrides: Any) -> str:
    """Signed with the provider's key (RS256, its kid) unless `key` or `header` say otherwise."""
    return jwt.encode(header or {"alg": "RS256", "kid": "k1", "typ": "logout+jwt"}, logout_claims(idp, **overrides),
                      key or idp.key)
