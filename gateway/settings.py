"""The main settings: GATEWAY_* from the environment and the env file, validated into one typed object."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway.access import ROOM_NAME, email_domain, room_key
from gateway.provider_settings import PROVIDER_NAME, CommaList, ProviderSettings, comma_list
from gateway.redis_url import CLUSTER_FORM, SENTINEL_FORM, RedisUrlError, parse_redis_url
from gateway.redis_url import SCHEMES as REDIS_SCHEMES

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME = re.compile(rf"\A(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")
GC_THRESHOLD = re.compile(r"\A[1-9][0-9]{0,8}(?: *, *[1-9][0-9]{0,8}){2}\Z")
MIN_SECRET_BYTES = 32
# The placeholder shipped in .env.example: refused outside the demo.
EXAMPLE_SECRET = "change-me-to-a-random-string-of-at-least-32-bytes"  # noqa: S105 - the placeholder we refuse
_KEY_HINT = "try: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class RoomSettings(BaseModel):
    """GATEWAY_ROOMS__<ROOM>__*: who may enter one room (besides passing the gateway's own lists)."""

    allowed_groups: CommaList = Field(default_factory=list)
    allowed_users: CommaList = Field(default_factory=list)

    _split = field_validator("allowed_groups", "allowed_users", mode="before")(comma_list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # Checks are field validators so every problem is reported under its own variable; a field's check
    # sees only the fields above it, hence `demo` first (the example key) and providers before the default.
    demo: bool = False
    public_url: str
    secret_keys: Annotated[list[SecretStr], NoDecode]
    providers: dict[str, ProviderSettings] = Field(default_factory=dict, validate_default=True)
    default_provider: str | None = None
    allowed_origins: CommaList = Field(default_factory=list)
    allowed_redirect_domains: CommaList = Field(default_factory=list)
    cookie_domain: str | None = None
    broker_url: str = "memory://"
    metrics_token: SecretStr | None = None
    trusted_proxies: CommaList = Field(default_factory=list)
    redis_prefix: str = Field(default="gateway:", min_length=1, max_length=64)
    redis_min_replicas: int = Field(default=0, ge=0, le=16)
    redis_replica_timeout: float = Field(default=1.0, gt=0, le=30)
    presence_ttl: float = Field(default=30.0, ge=3)
    history_path: Path = Path("gateway-history.sqlite3")
    log_format: Literal["text", "json"] = "text"
    session_max_age: int = Field(default=12 * 3600, gt=0)
    provider_timeout: float = Field(default=5.0, gt=0)
    allow_bots: bool = False
    # Who may use the gateway once signed in (gateway.access): empty lists restrict nothing.
    allowed_emails: CommaList = Field(default_factory=list)
    allowed_email_domains: CommaList = Field(default_factory=list)
    allowed_users: CommaList = Field(default_factory=list)
    allowed_groups: CommaList = Field(default_factory=list)
    groups_claim: str = Field(default="groups", min_length=1)
    required_scopes: CommaList = Field(default_factory=list)
    rooms: dict[str, RoomSettings] = Field(default_factory=dict)
    validation_cache_ttl: float = Field(default=60.0, gt=0)
    invalid_cache_ttl: float = Field(default=10.0, ge=0)
    validation_cache_size: int = Field(default=10_000, gt=0)
    provider_concurrency: int = Field(default=32, gt=0)
    failed_auth_burst: int = Field(default=20, gt=0)
    failed_auth_rate: float = Field(default=0.5, gt=0)
    jwt_leeway: int = Field(default=30, ge=0, le=300)
    logout_token_max_age: int = Field(default=300, gt=0, le=3600)  # how old a logout token's iat may be
    logout_replay_cache_size: int = Field(default=10_000, gt=0)
    logout_replay_cache_bytes: int = Field(default=2 << 20, ge=64 * 1024)
    jwks_refresh: float = Field(default=3600.0, gt=0)
    jwks_min_refetch: float = Field(default=60.0, ge=0)
    history_limit: int = Field(default=10_000, gt=0)
    history_on_join: int = Field(default=50, ge=0, le=1000)
    history_page: int = Field(default=100, ge=1, le=1000)
    history_max_rooms: int = Field(default=10_000, gt=0)
    history_rooms_per_user: int = Field(default=50, gt=0)
    history_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    send_queue_size: int = Field(default=256, gt=0)
    send_queue_bytes: int = Field(default=1 << 20, ge=64 * 1024)
    resume_rate: float = Field(default=0.5, gt=0)
    resume_burst: int = Field(default=10, gt=0)
    resume_byte_rate: int = Field(default=1 << 20, ge=64 * 1024)
    message_rate: float = Field(default=5.0, gt=0)
    message_burst: int = Field(default=10, gt=0)
    edit_window: int = Field(default=900, ge=0)  # seconds; 0: messages cannot be edited or deleted
    max_sockets_per_user: int = Field(default=10, gt=0)
    idle_timeout: float = Field(default=0.0, ge=0)
    ws_ping_interval: float = Field(default=20.0, gt=0)
    ws_ping_timeout: float = Field(default=20.0, gt=0)
    # The cyclic garbage collector's thresholds (gc.set_threshold) where the gateway runs its own server:
    # young collections every 50,000 allocations instead of Python's 700 (bench/README.md, "collector").
    gc_threshold: Annotated[tuple[int, int, int], NoDecode] = (50_000, 10, 10)

    _split = field_validator("allowed_origins", "allowed_redirect_domains", "trusted_proxies",
                             mode="before")(comma_list)
    _split_access = field_validator("allowed_emails", "allowed_email_domains", "allowed_users", "allowed_groups",
                                    "required_scopes", mode="before")(comma_list)

    @field_validator("gc_threshold", mode="before")
    @classmethod
    def _gc_threshold(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not GC_THRESHOLD.fullmatch(value.strip()):
            raise ValueError(f"three positive whole numbers like 50000,10,10 (Python's own: 700,10,10), got {value!r}")
        return tuple(int(part) for part in value.replace(" ", "").split(","))

    @field_validator("allowed_emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for email in value:
            if email_domain(email) is None or any(char.isspace() for char in email):
                raise ValueError(f"each entry must be an email address like alice@example.com, got {email!r}")
        return value

    @field_validator("allowed_email_domains")
    @classmethod
    def _email_domains(cls, value: list[str]) -> list[str]:
        domains = [domain.removeprefix("@") for domain in value]
        for domain in domains:
            if domain.startswith(("*", ".")):
                raise ValueError(f"{domain!r}: domains match exactly (example.com does not cover "
                                 f"sub.example.com); list each domain, without '*' or a leading '.'")
            if not domain or "@" in domain or any(char.isspace() for char in domain):
                raise ValueError(f"each entry must be a domain like example.com, got {domain!r}")
        return domains

    @field_validator("groups_claim")
    @classmethod
    def _groups_claim(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a claim, like groups, roles or realm_access.roles")
        return value.strip()

    @field_validator("rooms", mode="before")
    @classmethod
    def _room_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        # Env names can't hold "-" (and ignore case): rules are kept under room_key, and so cover every
        # room whose name differs only in case or in "-" against "_".
        renamed: dict[str, Any] = {}
        for name, rule in value.items():
            if not ROOM_NAME.fullmatch(str(name)):
                raise ValueError(f"room name {name!r}: use 1-64 letters, digits, '-' and '_'")
            key = room_key(str(name))
            if key in renamed:
                raise ValueError(f"two rules for room {key!r}: room rules ignore case, and '-' is '_'")
            renamed[key] = rule
        return renamed

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("secret_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr], info: ValidationInfo) -> list[SecretStr]:
        if not value:
            raise ValueError("is required: one or more random strings of 32+ bytes, comma-separated")
        for key in value:
            raw = key.get_secret_value()
            if not info.data.get("demo", False) and raw == EXAMPLE_SECRET:
                raise ValueError(f"still holds the example value: generate your own; {_KEY_HINT}")
            if len(raw.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"each key needs at least {MIN_SECRET_BYTES} bytes; {_KEY_HINT}")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be the origin users see, like https://chat.example.com, got {value!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be an origin without a path (the gateway is served at /)")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"each entry must be an IP address or network like 10.0.0.0/8, got {entry!r}") from None
        return value

    @field_validator("cookie_domain")
    @classmethod
    def _cookie_domain(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        domain = value.strip().lower().removeprefix(".")  # browsers ignore a leading dot
        if not HOSTNAME.fullmatch(domain) or _is_ip_address(domain) or "." not in domain:
            raise ValueError(f"must be a domain name like example.com (no scheme, port, path or IP address), "
                             f"got {value!r}")
        public = info.data.get("public_url")  # absent when the public URL itself is invalid
        host = urlsplit(public).hostname if public else None
        if host is not None and _is_ip_address(host):
            raise ValueError(f"GATEWAY_PUBLIC_URL's host {host} is an IP address: a cookie shared with other hosts "
                             "needs the gateway on a host name inside the domain")
        if host is not None and host != domain and not host.endswith("." + domain):
            raise ValueError(f"GATEWAY_PUBLIC_URL's host {host!r} is not inside {domain!r}, so browsers would refuse "
                             f"the cookie: use {host!r} or one of its parent domains")
        return domain

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
                raise ValueError(f"each entry must be an origin like https://app.example.com, got {origin!r}")
        return [origin.lower() for origin in value]

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        # Env names can't hold "-": <NAME> is the name upper-cased with "-" written as "_".
        renamed = {str(key).lower().replace("_", "-"): item for key, item in value.items()}
        for name in renamed:
            if not PROVIDER_NAME.fullmatch(name):
                raise ValueError(f"provider name {name!r}: use lowercase letters, digits and '-'")
        return renamed

    @field_validator("providers")
    @classmethod
    def _some_provider(cls, value: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        if not value:
            raise ValueError(
                "no provider configured: set GATEWAY_PROVIDERS__<NAME>__ISSUER and __CLIENT_ID (see .env.example)"
            )
        return value

    @field_validator("default_provider")
    @classmethod
    def _default_is_configured(cls, value: str | None, info: ValidationInfo) -> str | None:
        providers = info.data.get("providers")  # absent when the providers themselves are invalid
        if value is not None and providers is not None and value not in providers:
            raise ValueError(f"{value!r} names no configured provider ({', '.join(sorted(providers))})")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_available(cls, value: str) -> str:
        if value == "memory://":
            return value
        if value.partition("://")[0].lower() not in REDIS_SCHEMES:
            raise ValueError(f"use memory:// (one process), redis://host:6379/0, {SENTINEL_FORM} or {CLUSTER_FORM}")
        try:
            parse_redis_url(value)
        except RedisUrlError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix_without_tag(cls, value: str, info: ValidationInfo) -> str:
        if ("{" in value or "}" in value) and str(info.data.get("broker_url", "")).startswith(("redis+cluster",
                                                                                            "rediss+cluster")):
            raise ValueError("must not hold '{' or '}' with a Redis Cluster: each room's keys carry the room as "
                             "their hash tag, and a tag in the prefix would put every room on one shard")
        return value

    @field_validator("redis_min_replicas")
    @classmethod
    def _replicas_need_redis(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("broker_url", "memory://") == "memory://":
            raise ValueError("counts Redis replicas: set GATEWAY_BROKER_URL to a Redis (or leave this at 0)")
        return value

    @property
    def is_https(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def default_provider_name(self) -> str:
        return self.default_provider or next(iter(self.providers))

    @property
    def uses_redis(self) -> bool:
        return self.broker_url != "memory://"

    def redirect_uri(self, provider: str) -> str:
        return f"{self.public_url}/auth/{provider}/callback"

    def backchannel_logout_uri(self, provider: str) -> str:
        return f"{self.public_url}/auth/{provider}/backchannel-logout"

    def frontchannel_logout_uri(self, provider: str) -> str:
        return f"{self.public_url}/auth/{provider}/frontchannel-logout"
