"""GATEWAY_* variables that are no setting: one problem line each, naming it and the closest setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.unknown_settings import closest_setting, setting_names, unknown_variables
from tests.test_config import GOOD, write_env


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(("typo", "meant"), [
    ("GATEWAY_ALLOWED_EMAIL", "GATEWAY_ALLOWED_EMAILS"),
    ("GATEWAY_PUBLIC_UR", "GATEWAY_PUBLIC_URL"),
    ("GATEWAY_PROVIDERS__KEYCLOAK__CLIENT_SECRT", "GATEWAY_PROVIDERS__KEYCLOAK__CLIENT_SECRET"),
    ("GATEWAY_PROVIDER__KEYCLOAK__CLIENT_ID", "GATEWAY_PROVIDERS__KEYCLOAK__CLIENT_ID"),
    ("GATEWAY_ROOMS__STAFF__ALLOWED_GROUP", "GATEWAY_ROOMS__STAFF__ALLOWED_GROUPS"),
])
def test_a_typo_is_told_the_setting_it_is_closest_to(typo: str, meant: str) -> None:
    assert closest_setting(typo) == meant


@pytest.mark.parametrize("name", [
    "GATEWAY_ALLOWED_EMAILS", "GATEWAY_PROVIDERS", "GATEWAY_PROVIDERS__MY_IDP",
    "GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRET", "GATEWAY_ROOMS", "GATEWAY_ROOMS__STAFF__ALLOWED_USERS",
])
def test_settings_are_themselves(name: str) -> None:
    assert closest_setting(name) == name


@pytest.mark.parametrize("name", [
    "GATEWAY_DEMO",  # set by `gateway demo` only, never from the environment
    "GATEWAY_SECRET_KEYS__EXTRA", "GATEWAY_PROVIDERS__IDP__ISSUER__X", "GATEWAY_PROVIDERS____ISSUER",
    "GATEWAY_COMPLETELY_DIFFERENT",
])
def test_names_far_from_every_setting_get_no_suggestion(name: str) -> None:
    assert closest_setting(name) is None


def test_unknown_variables_name_each_one_and_where_it_was_set(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, {**GOOD, "GATEWAY_ALLOWED_EMAIL": "alice@example.com", "OTHER_APP_SETTING": "x"})

    lines = unknown_variables(env_file, environ={"gateway_nonsense_here": "1", "HOME": "/root"})

    assert lines == [
        "gateway_nonsense_here: not a setting (in the environment); see .env.example for every setting",
        f"GATEWAY_ALLOWED_EMAIL: not a setting (in {env_file}); did you mean GATEWAY_ALLOWED_EMAILS?",
    ]


def test_load_settings_refuses_unknown_variables_when_asked(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, {**GOOD, "GATEWAY_PROVIDERS__IDP__CLIENT_SECRT": "x"})

    assert load_settings(env_file=env_file).providers["idp"].client_secret is None  # the silent trap
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=env_file, reject_unknown=True)
    assert caught.value.problems == [
        f"GATEWAY_PROVIDERS__IDP__CLIENT_SECRT: not a setting (in {env_file}); "
        "did you mean GATEWAY_PROVIDERS__IDP__CLIENT_SECRET?"
    ]


def test_unknown_variables_come_first_among_other_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    variables = {name: value for name, value in GOOD.items() if name != "GATEWAY_PUBLIC_URL"}
    monkeypatch.setenv("GATEWAY_PUBLIC_UR", "https://chat.example.com")

    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=write_env(tmp_path, variables), reject_unknown=True)

    assert [line.split(": ", 1)[0] for line in caught.value.problems] == ["GATEWAY_PUBLIC_UR", "GATEWAY_PUBLIC_URL"]
    assert "did you mean GATEWAY_PUBLIC_URL?" in caught.value.problems[0]


def test_every_setting_name_is_a_setting() -> None:
    names = setting_names()
    assert "GATEWAY_ALLOWED_EMAILS" in names and "GATEWAY_PROVIDERS__<NAME>__CLIENT_SECRET" in names
    for name in names:
        concrete = name.replace("<NAME>", "IDP").replace("<ROOM>", "LOBBY")
        assert closest_setting(concrete) == concrete
