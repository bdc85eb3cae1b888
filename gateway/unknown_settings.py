"""GATEWAY_* variables that are no setting. pydantic-settings ignores them, so a typo such as
GATEWAY_ALLOWED_EMAIL (singular) would switch the allow-list off without a word: each one is a problem
line instead, with the setting it is closest to."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from dotenv import dotenv_values

from gateway.provider_settings import ProviderSettings
from gateway.settings import RoomSettings, Settings

PREFIX = "GATEWAY_"
NESTED_DELIMITER = "__"
# Fields no variable may set: `demo` is set by `gateway demo` alone (never from GATEWAY_DEMO).
NOT_FROM_THE_ENVIRONMENT = frozenset({"demo"})
# GATEWAY_<FIELD>__<NAME>__<SUB-FIELD>: one block of sub-settings per provider or room.
NESTED_FIELDS: dict[str, frozenset[str]] = {
    "PROVIDERS": frozenset(name.upper() for name in ProviderSettings.model_fields),
    "ROOMS": frozenset(name.upper() for name in RoomSettings.model_fields),
}
# Similarity (difflib's ratio, 0 to 1) above which a setting is offered as "did you mean".
CLOSE_ENOUGH = 0.7


def top_level_fields() -> frozenset[str]:
    return frozenset(name.upper() for name in Settings.model_fields if name not in NOT_FROM_THE_ENVIRONMENT)


def setting_names() -> list[str]:
    """Every variable name a setting is read from; <NAME> and <ROOM> stand for a provider's or a room's."""
    names = [PREFIX + field for field in sorted(top_level_fields() - NESTED_FIELDS.keys())]
    placeholders = {"PROVIDERS": "<NAME>", "ROOMS": "<ROOM>"}
    for field, subfields in NESTED_FIELDS.items():
        names += [f"{PREFIX}{field}__{placeholders[field]}__{sub}" for sub in sorted(subfields)]
    return names


def _closest(word: str, candidates: frozenset[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=CLOSE_ENOUGH)
    return matches[0] if matches else None


def closest_setting(name: str) -> str | None:
    """`name` itself (upper case, GATEWAY_ prefixed) when it is a setting; else the closest one, or None."""
    parts = name.removeprefix(PREFIX).split(NESTED_DELIMITER)
    fields = top_level_fields()
    head = parts[0] if parts[0] in fields else _closest(parts[0], fields)
    if head is None:
        return None
    subfields = NESTED_FIELDS.get(head)
    if subfields is None:
        return PREFIX + head if len(parts) == 1 else None
    # GATEWAY_PROVIDERS (JSON), GATEWAY_PROVIDERS__<NAME> (JSON) and GATEWAY_PROVIDERS__<NAME>__<SUB-FIELD>.
    if len(parts) > 3 or any(not part for part in parts[1:]):
        return None
    corrected = [PREFIX + head, *parts[1:2]]
    if len(parts) == 3:
        sub = parts[2] if parts[2] in subfields else _closest(parts[2], subfields)
        if sub is None:
            return None
        corrected.append(sub)
    return NESTED_DELIMITER.join(corrected)


def _gateway_variables(env_file: str | Path | None, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(name, where it was set) for every GATEWAY_* variable, in any case (settings ignore case)."""
    seen: set[str] = set()
    for name in environ:
        if name.upper().startswith(PREFIX) and name.upper() not in seen:
            seen.add(name.upper())
            yield name, "in the environment"
    if env_file is not None and Path(env_file).is_file():
        for name in dotenv_values(env_file):
            if name.upper().startswith(PREFIX) and name.upper() not in seen:
                seen.add(name.upper())
                yield name, f"in {env_file}"


def unknown_variables(env_file: str | Path | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per GATEWAY_* variable that is no setting, naming it and where it was set."""
    problems = []
    for name, where in _gateway_variables(env_file, os.environ if environ is None else environ):
        match = closest_setting(name.upper())
        if match == name.upper():
            continue
        hint = f"did you mean {match}?" if match else "see .env.example for every setting"
        problems.append(f"{name}: not a setting ({where}); {hint}")
    return problems
