"""Provider presets: what two or three env lines leave out (issuer, scopes, validation, quirks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GITHUB = "https://github.com"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    validation: str  # the default strategy
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    issuer: str | None = None  # fixed issuer, when the provider has one for everybody
    issuer_template: str | None = None  # built from TENANT / DOMAIN
    needs: tuple[str, ...] = ()  # settings the issuer is built from, when ISSUER is not given
    discovery: bool = True
    notes: dict[str, str] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "oidc": Preset("oidc", "OpenID Connect", "userinfo"),
    # GitHub is OAuth2 without OpenID Connect: no discovery, no ID token, opaque tokens checked at its API.
    "github": Preset("github", "GitHub", "github", scopes=("read:user", "user:email"), discovery=False),
    "google": Preset("google", "Google", "userinfo", issuer="https://accounts.google.com"),
    # ISSUER is the realm URL: https://sso.example.com/realms/<realm>. Access tokens are JWTs.
    "keycloak": Preset("keycloak", "Keycloak", "jwt", needs=("issuer",)),
    # Tokens for Microsoft Graph cannot be verified locally (Graph-audience signing): ask Graph's userinfo.
    "entra": Preset("entra", "Microsoft", "userinfo",
                    issuer_template="https://login.microsoftonline.com/{tenant}/v2.0", needs=("tenant",)),
    # Auth0's issuer ends with "/"; access tokens are JWTs only when an AUDIENCE (API identifier) is asked.
    "auth0": Preset("auth0", "Auth0", "userinfo", issuer_template="https://{domain}/", needs=("domain",)),
    "gitlab": Preset("gitlab", "GitLab", "userinfo", issuer="https://gitlab.com",
                     scopes=("openid", "profile", "email")),
}


def github_metadata(base: str | None) -> dict[str, Any]:
    """GitHub (or GitHub Enterprise Server at `base`) endpoints; GitHub publishes no discovery document."""
    web = (base or GITHUB).rstrip("/")
    api = "https://api.github.com" if web == GITHUB else f"{web}/api/v3"
    return {
        "issuer": web,
        "authorization_endpoint": f"{web}/login/oauth/authorize",
        "token_endpoint": f"{web}/login/oauth/access_token",
        "userinfo_endpoint": f"{api}/user",
        "api_base": api,
    }
