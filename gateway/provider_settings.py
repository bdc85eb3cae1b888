"""GATEWAY_PROVIDERS__<NAME>__*: one identity provider's settings, completed by its preset."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from gateway.presets import PRESETS
from gateway.presets import Preset as PresetInfo

# \A...\Z, not ^...$: "$" also matches before a final newline.
PROVIDER_NAME = re.compile(r"\A[a-z0-9][a-z0-9-]{0,31}\Z")

Preset = Literal["oidc", "github", "google", "keycloak", "entra", "auth0", "gitlab"]
Validation = Literal["userinfo", "introspection", "jwt", "github"]
# Never "none", never HS*: a public key must not be usable as an HMAC secret.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]



class ProviderSettings(BaseModel):
    # Each check is a field validator (not one model validator) so every problem is reported, each under
    # its own variable (GATEWAY_PROVIDERS__<NAME>__ISSUER, ...). A check sees only the fields above it:
    # hence preset, tenant and domain before issuer, and client_secret before validation.
    preset: Preset = "oidc"
    tenant: str | None = None
    domain: str | None = None
    issuer: str | None = Field(default=None, validate_default=True)
    client_id: str = Field(default="", validate_default=True)
    client_secret: SecretStr | None = None
    scopes: CommaList | None = Field(default=None, validate_default=True)
    audience: str | None = None
    validation: Validation | None = Field(default=None, validate_default=True)
    algorithms: CommaList = Field(default_factory=list)
    required_scopes: CommaList = Field(default_factory=list)
    title: str | None = None
    # Logout the provider starts (docs/logout.md): "auto" when its discovery advertises it.
    backchannel_logout: Literal["auto", "on", "off"] = "auto"
    frontchannel_logout: Literal["auto", "on", "off"] = "auto"

    _split = field_validator("scopes", "algorithms", "required_scopes", mode="before")(comma_list)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        preset = PRESETS[info.data.get("preset", "oidc")]
        if value is None:
            if preset.issuer:
                return preset.issuer
            if preset.issuer_template:
                needed = preset.needs[0]
                part = info.data.get(needed)
                if not part:
                    raise ValueError(f"set {needed.upper()} (or ISSUER) for preset {preset.name!r}")
                value = preset.issuer_template.format(**{needed: part})
            elif preset.discovery:
                raise ValueError("is required for an OpenID Connect provider (the URL before /.well-known)")
            else:
                return None  # GitHub: github.com unless ISSUER names a GitHub Enterprise server
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL like https://idp.example.com/realms/main, got {value!r}")
        return value.rstrip("/")

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if not value:
            raise ValueError("is required: the client registered for the gateway at the provider")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str] | None, info: ValidationInfo) -> list[str]:
        return value if value else list(PRESETS[info.data.get("preset", "oidc")].scopes)

    @field_validator("validation")
    @classmethod
    def _validation(cls, value: str | None, info: ValidationInfo) -> str:
        preset = PRESETS[info.data.get("preset", "oidc")]
        if value is None:
            # Auth0 issues JWT access tokens only for an API (AUDIENCE); without one, ask userinfo.
            value = "jwt" if preset.name == "auth0" and info.data.get("audience") else preset.validation
        if (value == "github") != (preset.name == "github"):
            raise ValueError("github validation goes with PRESET=github, and only with it")
        if value == "introspection" and info.data.get("client_secret") is None:
            raise ValueError("introspection authenticates the gateway at the provider: set CLIENT_SECRET too")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg not in ASYMMETRIC_ALGORITHMS:
                allowed = ", ".join(ASYMMETRIC_ALGORITHMS)
                raise ValueError(f"{alg!r} is not allowed: use asymmetric algorithms ({allowed})")
        return value

    @property
    def preset_info(self) -> PresetInfo:
        return PRESETS[self.preset]
