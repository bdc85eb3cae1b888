"""Loading settings: the environment and the env file into Settings, or one line per problem.

The settings themselves live in gateway.settings (the main ones) and gateway.provider_settings (one
provider's); the check for variables that are no setting at all in gateway.unknown_settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from gateway.errors import ConfigError
from gateway.provider_settings import (
    ASYMMETRIC_ALGORITHMS,
    PROVIDER_NAME,
    CommaList,
    Preset,
    ProviderSettings,
    Validation,
    comma_list,
)
from gateway.settings import EXAMPLE_SECRET, HOSTNAME, MIN_SECRET_BYTES, RoomSettings, Settings
from gateway.unknown_settings import unknown_variables

__all__ = [
    "ASYMMETRIC_ALGORITHMS", "EXAMPLE_SECRET", "HOSTNAME", "MIN_SECRET_BYTES", "PROVIDER_NAME", "CommaList",
    "Preset", "ProviderSettings", "RoomSettings", "Settings", "Validation", "comma_list", "describe",
    "load_settings",
]


def _variable(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not str(part).startswith(("function-", "list[", "dict["))]
    if not parts:
        return "GATEWAY_*"
    parts = [part.upper().replace("-", "_") for part in parts]
    return "GATEWAY_" + "__".join(parts)


def describe(error: ValidationError) -> list[str]:
    """One line per problem, naming the variable and what to do."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is required (see .env.example)"
        loc = item["loc"]
        if loc and isinstance(loc[-1], int):  # an entry of a comma list
            loc = loc[:-1]
        lines.append(f"{_variable(loc) if loc else 'settings'}: {message}")
    return lines


def load_settings(env_file: str | Path | None = ".env", *, reject_unknown: bool = False,
                  **overrides: Any) -> Settings:
    """Build Settings from the environment (and env file); raise ConfigError listing every problem.

    With `reject_unknown` (the commands do), a GATEWAY_* variable that is no setting is a problem too."""
    if env_file is not None and str(env_file) != ".env" and not Path(env_file).is_file():
        raise ConfigError([f"--env-file {env_file}: no such file"])
    unknown = unknown_variables(env_file) if reject_unknown else []
    # `demo` (which accepts the example key) is only ever set by `gateway demo`: never from GATEWAY_DEMO.
    overrides.setdefault("demo", False)
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(unknown + describe(exc)) from None
    except SettingsError as exc:
        # pydantic-settings raises this before validation, e.g. for a value it cannot parse:
        # 'error parsing value for field "providers" from source "EnvSettingsSource"'.
        field = re.search(r'field "([^"]+)"', str(exc))
        variable = _variable((field.group(1),)) if field else "settings"
        raise ConfigError([*unknown, f"{variable}: {exc}; check the value's format in .env.example"]) from None
    if unknown:
        raise ConfigError(unknown)
    return settings
