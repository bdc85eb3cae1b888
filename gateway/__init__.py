"""gateway: a login gateway with a provider-checked real-time chat, and the same sign-in and
HTTP-and-WebSocket dependency as a library for your own FastAPI app (docs/library.md).

The public API is what `__all__` names. It is imported on first use, so that `import gateway.tokens` (or
any other plain core) loads no web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.dependencies import CurrentUser, OptionalUser, optional_user, require
    from gateway.errors import ConfigError
    from gateway.library import Gateway
    from gateway.live import LiveSession, live_session
    from gateway.security import current_principal as current_user
    from gateway.tokens import Principal

__all__ = [
    "ConfigError",
    "CurrentUser",
    "Gateway",
    "LiveSession",
    "OptionalUser",
    "Principal",
    "Settings",
    "current_user",
    "live_session",
    "optional_user",
    "require",
]

_WHERE = {
    "ConfigError": ("gateway.errors", "ConfigError"),
    "CurrentUser": ("gateway.dependencies", "CurrentUser"),
    "Gateway": ("gateway.library", "Gateway"),
    "LiveSession": ("gateway.live", "LiveSession"),
    "OptionalUser": ("gateway.dependencies", "OptionalUser"),
    "Principal": ("gateway.tokens", "Principal"),
    "Settings": ("gateway.config", "Settings"),
    "current_user": ("gateway.security", "current_principal"),
    "live_session": ("gateway.live", "live_session"),
    "optional_user": ("gateway.dependencies", "optional_user"),
    "require": ("gateway.dependencies", "require"),
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
