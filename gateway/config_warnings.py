"""Settings that are valid but probably not what an operator meant: warning lines, not errors."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from gateway.settings import Settings

# Presets whose provider lets anyone in the world create an account (self-managed GitLab or GitHub
# Enterprise, with an ISSUER of their own, may not).
OPEN_SIGN_UP = {"github": None, "google": "https://accounts.google.com", "gitlab": "https://gitlab.com"}
ALLOW_LISTS = ("allowed_emails", "allowed_email_domains", "allowed_users", "allowed_groups")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def config_warnings(settings: Settings) -> list[str]:
    """One line per suspicious setting, naming the variable and what to do."""
    warnings = []
    host = urlsplit(settings.public_url).hostname or ""
    if not settings.is_https and not is_loopback_host(host):
        warnings.append(f"GATEWAY_PUBLIC_URL: {settings.public_url} is plain http on a host other than loopback: "
                        "cookies lack Secure and their __Host- prefix, and tokens cross the network in clear; "
                        "use https:// (TLS at a reverse proxy is enough)")
    if not any(getattr(settings, name) for name in ALLOW_LISTS):
        for name, provider in settings.providers.items():
            if provider.preset in OPEN_SIGN_UP and provider.issuer == OPEN_SIGN_UP[provider.preset]:
                warnings.append(f"GATEWAY_ALLOWED_*: all empty, and provider {name} is {provider.preset_info.title}: "
                                "anyone with an account can sign in; set GATEWAY_ALLOWED_EMAILS, "
                                "GATEWAY_ALLOWED_EMAIL_DOMAINS, GATEWAY_ALLOWED_USERS or GATEWAY_ALLOWED_GROUPS")
    return warnings
