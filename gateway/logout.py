"""Signing out at the provider: token revocation (RFC 7009) and the form for RP-initiated logout
(OpenID Connect RP-Initiated Logout 1.0). No web framework here; provider trouble never stops a logout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

from gateway.errors import ProviderUnavailable
from gateway.providers import Provider, variable_prefix
from gateway.tokens import fingerprint

log = logging.getLogger("gateway.auth")

# What may stand in a CSP source expression and a form action: a discovery document is configuration we
# trust, but not enough to write arbitrary text into a response header.
HOST_PORT = re.compile(r"\A(?:[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?)\Z")


def csp_origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL whose host may stand in a CSP source expression; else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not HOST_PORT.fullmatch(parts.netloc):
        return None
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class EndSession:
    """A form the browser posts to the provider's end_session_endpoint: the ID token travels in the
    body, never in a URL (history, logs, Referer)."""

    action: str
    fields: tuple[tuple[str, str], ...]

    @property
    def origin(self) -> str:
        return csp_origin(self.action) or "'none'"  # end_session() makes none without one


def end_session(metadata: dict[str, Any], client_id: str, id_token: str | None,
                post_logout_redirect_uri: str) -> EndSession | None:
    """The form for the provider's end-session endpoint, or None when it publishes none (or a bad one)."""
    endpoint = metadata.get("end_session_endpoint")
    if not isinstance(endpoint, str):
        return None
    if csp_origin(endpoint) is None or urlsplit(endpoint).fragment:
        log.warning("ignoring end_session_endpoint %r: not an http(s) URL", endpoint[:200])
        return None
    # client_id too: with post_logout_redirect_uri the spec recommends it, and it is all we can send when
    # the ID token was too big to keep.
    fields = [("client_id", client_id), ("post_logout_redirect_uri", post_logout_redirect_uri)]
    if id_token:
        fields.insert(0, ("id_token_hint", id_token))
    return EndSession(endpoint, tuple(fields))


CHANNELS = {"backchannel": "back-channel", "frontchannel": "front-channel"}


def channel_setting(provider: Provider, channel: str) -> str:
    return str(getattr(provider.settings, f"{channel}_logout"))


def advertised(metadata: dict[str, Any], channel: str) -> bool:
    return metadata.get(f"{channel}_logout_supported") is True


async def supports(provider: Provider, channel: str) -> bool:
    """Whether `channel` ("backchannel" or "frontchannel") logout is on for `provider`: its setting, or with
    "auto" its discovery's `<channel>_logout_supported`."""
    setting = channel_setting(provider, channel)
    if setting != "auto":
        return setting == "on"
    if not provider.preset.discovery:
        return False
    try:
        metadata = await provider.metadata()
    except ProviderUnavailable:
        return False
    return advertised(metadata, channel)


def logout_uri_lines(provider: Provider, metadata: dict[str, Any], uris: dict[str, str]) -> list[str]:
    """For check-config: per channel, the URI to register next to the redirect URI, whether the provider
    advertises the channel, and whether the gateway accepts it."""
    if not provider.preset.discovery:
        return ["  logout: none (this provider cannot tell the gateway that a session ended)"]
    lines = []
    for channel, label in CHANNELS.items():
        variable = f"{variable_prefix(provider.name)}__{channel.upper()}_LOGOUT"
        setting = channel_setting(provider, channel)
        said = advertised(metadata, channel)
        if setting == "auto":
            state = "accepted" if said else f"not accepted; {variable}=on accepts it"
        else:
            state = f"{'accepted' if setting == 'on' else 'not accepted'} ({variable}={setting})"
        lines.append(f"  {label} logout URI: {uris[channel]} ({'advertised' if said else 'not advertised'} by the "
                     f"provider; {state})")
    return lines


async def revoke_tokens(provider: Provider, tokens: Sequence[tuple[str, str]]) -> None:
    """Ask the provider to revoke each (token, token_type_hint), when it has a revocation endpoint.
    Failures are logged, never raised: the gateway's own logout does not depend on them."""
    if not tokens:
        return
    try:
        metadata = await provider.metadata()
    except ProviderUnavailable as exc:
        log.warning("revocation at %s skipped: %s", provider.name, exc.detail)
        return
    endpoint = metadata.get("revocation_endpoint")
    if not isinstance(endpoint, str):
        return
    for token, hint in tokens:
        data, auth = _client_authentication(provider, metadata)
        try:
            response = await provider.http.request(
                "POST", endpoint, data={"token": token, "token_type_hint": hint, **data}, auth=auth,
                headers={"Accept": "application/json"},
            )
        except ProviderUnavailable as exc:
            # Down or slow: the next call would wait just as long.
            log.warning("revocation at %s failed: %s", provider.name, exc.detail)
            return
        if response.is_success:
            log.info("revoked %s %s at %s", hint, fingerprint(token), provider.name)
        else:
            log.warning("revocation of %s %s at %s answered %d", hint, fingerprint(token), provider.name,
                        response.status_code)


def _client_authentication(provider: Provider,
                           metadata: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str] | None]:
    """RFC 7009 §2.1: the client authenticates as at the token endpoint. Basic with the RFC 6749 §2.3.1
    encoding, unless the provider only takes the secret in the body; a public client names itself."""
    settings = provider.settings
    if settings.client_secret is None:
        return {"client_id": settings.client_id}, None
    secret = settings.client_secret.get_secret_value()
    methods = metadata.get("revocation_endpoint_auth_methods_supported")
    if not provider.preset.discovery or (
            isinstance(methods, list) and "client_secret_post" in methods and "client_secret_basic" not in methods):
        return {"client_id": settings.client_id, "client_secret": secret}, None
    return {}, (quote_plus(settings.client_id, safe=""), quote_plus(secret, safe=""))
