"""load_settings: a good env file gives typed Settings; each bad one gives one line per problem, by variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gateway.config import EXAMPLE_SECRET, ProviderSettings, Settings, load_settings
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
KEY = "k" * 32
OTHER_KEY = "another-secret-key-0123456789-abcdef"
GOOD = {
    "GATEWAY_PUBLIC_URL": "https://chat.example.com",
    "GATEWAY_SECRET_KEYS": KEY,
    "GATEWAY_PROVIDERS__IDP__ISSUER": "https://idp.example.com",
    "GATEWAY_PROVIDERS__IDP__CLIENT_ID": "gateway",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings are case-insensitive: gateway_public_url would count too.
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def write_env(directory: Path, variables: dict[str, str]) -> Path:
    path = directory / "test.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()), encoding="utf-8")
    return path


def with_changes(drop: tuple[str, ...] = (), **changes: str) -> dict[str, str]:
    variables = {name: value for name, value in GOOD.items() if name not in drop}
    variables.update(changes)
    return variables


def problems_of(tmp_path: Path, variables: dict[str, str], **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=write_env(tmp_path, variables), **overrides)
    return caught.value.problems


def settings_of(tmp_path: Path, variables: dict[str, str]) -> Settings:
    return load_settings(env_file=write_env(tmp_path, variables))


def named(problems: list[str]) -> list[str]:
    """The variable each problem line names (the text before the first ': ')."""
    return [line.split(": ", 1)[0] for line in problems]


def test_good_env_file(tmp_path: Path) -> None:
    path = write_env(tmp_path, {
        "GATEWAY_PUBLIC_URL": "https://chat.example.com/",
        "GATEWAY_SECRET_KEYS": f"{KEY}, {OTHER_KEY}",
        "GATEWAY_PROVIDERS__MY_IDP__ISSUER": "https://idp.example.com/realms/main/",
        "GATEWAY_PROVIDERS__MY_IDP__CLIENT_ID": "gateway",
        "GATEWAY_PROVIDERS__MY_IDP__CLIENT_SECRET": "client-s3cret",
        "GATEWAY_PROVIDERS__MY_IDP__SCOPES": "openid, email,groups",
        "GATEWAY_PROVIDERS__MY_IDP__TITLE": "My IdP",
        "GATEWAY_DEFAULT_PROVIDER": "my-idp",
        "GATEWAY_ALLOWED_ORIGINS": "https://App.example.com,http://localhost:3000",
        "GATEWAY_LOG_FORMAT": "json",
        "GATEWAY_SESSION_MAX_AGE": "3600",
    })

    settings = load_settings(env_file=path)

    assert settings.public_url == "https://chat.example.com"
    assert [key.get_secret_value() for key in settings.secret_keys] == [KEY, OTHER_KEY]
    assert list(settings.providers) == ["my-idp"]
    provider = settings.providers["my-idp"]
    assert provider.issuer == "https://idp.example.com/realms/main"
    assert provider.client_id == "gateway"
    assert provider.client_secret is not None and provider.client_secret.get_secret_value() == "client-s3cret"
    assert provider.scopes == ["openid", "email", "groups"]
    assert provider.title == "My IdP"
    assert settings.default_provider_name == "my-idp"
    assert settings.allowed_origins == ["https://app.example.com", "http://localhost:3000"]
    assert settings.log_format == "json"
    assert settings.session_max_age == 3600
    assert settings.is_https
    assert settings.redirect_uri("my-idp") == "https://chat.example.com/auth/my-idp/callback"


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings(env_file=write_env(tmp_path, GOOD))

    provider = settings.providers["idp"]
    assert provider.preset == "oidc"
    assert provider.validation == "userinfo"
    assert provider.scopes == ["openid", "profile", "email"]
    assert provider.client_secret is None
    assert settings.default_provider_name == "idp"
    assert settings.allowed_origins == []
    assert settings.broker_url == "memory://"
    assert settings.log_format == "text"


def test_environment_is_read_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "http://127.0.0.1:8000")

    settings = load_settings(env_file=write_env(tmp_path, with_changes(drop=("GATEWAY_PUBLIC_URL",))))

    assert settings.public_url == "http://127.0.0.1:8000"
    assert not settings.is_https


def test_missing_env_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=tmp_path / "missing.env")
    assert caught.value.problems == [f"--env-file {tmp_path / 'missing.env'}: no such file"]


def test_missing_public_url(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(drop=("GATEWAY_PUBLIC_URL",)))
    assert named(problems) == ["GATEWAY_PUBLIC_URL"]
    assert "required" in problems[0]


def test_public_url_with_path(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PUBLIC_URL="https://chat.example.com/chat"))
    assert named(problems) == ["GATEWAY_PUBLIC_URL"]
    assert "without a path" in problems[0]


def test_public_url_not_a_url(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PUBLIC_URL="chat.example.com"))
    assert named(problems) == ["GATEWAY_PUBLIC_URL"]
    assert "like https://chat.example.com" in problems[0]
    assert "'chat.example.com'" in problems[0]


def test_missing_secret_keys(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(drop=("GATEWAY_SECRET_KEYS",)))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]
    assert "required" in problems[0]


def test_empty_secret_keys(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_SECRET_KEYS=" , "))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]
    assert "required" in problems[0]


def test_short_secret_key(tmp_path: Path) -> None:
    short = "x" * 31
    problems = problems_of(tmp_path, with_changes(GATEWAY_SECRET_KEYS=f"{KEY},{short}"))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]
    assert "at least 32 bytes" in problems[0]
    assert "secrets.token_urlsafe" in problems[0]
    assert short not in problems[0]


def test_key_length_counts_bytes_not_characters(tmp_path: Path) -> None:
    sixteen_two_byte_characters = "é" * 16  # 32 bytes in UTF-8
    settings = load_settings(env_file=write_env(tmp_path, with_changes(
        GATEWAY_SECRET_KEYS=sixteen_two_byte_characters)))
    assert settings.secret_keys[0].get_secret_value() == sixteen_two_byte_characters


def test_example_secret_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_SECRET_KEYS=EXAMPLE_SECRET))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]
    assert "example value" in problems[0]
    assert "secrets.token_urlsafe" in problems[0]


def test_example_secret_refused_among_others(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_SECRET_KEYS=f"{KEY},{EXAMPLE_SECRET}"))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]


def test_example_secret_accepted_by_the_demo(tmp_path: Path) -> None:
    settings = load_settings(env_file=write_env(tmp_path, with_changes(GATEWAY_SECRET_KEYS=EXAMPLE_SECRET)),
                             demo=True)
    assert settings.secret_keys[0].get_secret_value() == EXAMPLE_SECRET


def test_demo_flag_is_not_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DEMO", "true")
    problems = problems_of(tmp_path, with_changes(GATEWAY_SECRET_KEYS=EXAMPLE_SECRET, GATEWAY_DEMO="true"))
    assert named(problems) == ["GATEWAY_SECRET_KEYS"]


def test_no_provider(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(
        drop=("GATEWAY_PROVIDERS__IDP__ISSUER", "GATEWAY_PROVIDERS__IDP__CLIENT_ID")))
    assert named(problems) == ["GATEWAY_PROVIDERS"]
    assert "GATEWAY_PROVIDERS__<NAME>__ISSUER" in problems[0]


def test_provider_without_issuer(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(drop=("GATEWAY_PROVIDERS__IDP__ISSUER",)))
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__ISSUER"]
    assert "required" in problems[0]


def test_provider_without_client_id(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(drop=("GATEWAY_PROVIDERS__IDP__CLIENT_ID",)))
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__CLIENT_ID"]
    assert "registered for the gateway" in problems[0]


def test_provider_with_neither_names_both(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(
        drop=("GATEWAY_PROVIDERS__IDP__ISSUER", "GATEWAY_PROVIDERS__IDP__CLIENT_ID"),
        GATEWAY_PROVIDERS__MY_IDP__TITLE="Mine"))
    assert named(problems) == ["GATEWAY_PROVIDERS__MY_IDP__ISSUER", "GATEWAY_PROVIDERS__MY_IDP__CLIENT_ID"]


def test_provider_issuer_not_a_url(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PROVIDERS__IDP__ISSUER="idp.example.com"))
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__ISSUER"]
    assert "http(s) URL" in problems[0]


def test_bad_provider_name(tmp_path: Path) -> None:
    providers = '{"bad name": {"issuer": "https://idp.example.com", "client_id": "gateway"}}'
    problems = problems_of(tmp_path, with_changes(
        drop=("GATEWAY_PROVIDERS__IDP__ISSUER", "GATEWAY_PROVIDERS__IDP__CLIENT_ID"),
        GATEWAY_PROVIDERS=f"'{providers}'"))
    assert named(problems) == ["GATEWAY_PROVIDERS"]
    assert "'bad name'" in problems[0]
    assert "lowercase letters, digits and '-'" in problems[0]


def test_providers_as_json(tmp_path: Path) -> None:
    providers = '{"Corp_SSO": {"issuer": "https://sso.example.com", "client_id": "gateway"}}'
    settings = load_settings(env_file=write_env(tmp_path, with_changes(
        drop=("GATEWAY_PROVIDERS__IDP__ISSUER", "GATEWAY_PROVIDERS__IDP__CLIENT_ID"),
        GATEWAY_PROVIDERS=f"'{providers}'")))
    assert list(settings.providers) == ["corp-sso"]


def test_unknown_default_provider(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_DEFAULT_PROVIDER="other"))
    assert named(problems) == ["GATEWAY_DEFAULT_PROVIDER"]
    assert "'other'" in problems[0]
    assert "(idp)" in problems[0]


def test_github_preset_needs_no_issuer_and_defaults_to_github_validation(tmp_path: Path) -> None:
    variables = with_changes(GATEWAY_PROVIDERS__IDP__PRESET="github")
    del variables["GATEWAY_PROVIDERS__IDP__ISSUER"]
    settings = settings_of(tmp_path, variables)
    provider = settings.providers["idp"]
    assert provider.issuer is None and provider.validation == "github"
    assert provider.scopes == ["read:user", "user:email"]


def test_presets_build_their_issuer(tmp_path: Path) -> None:
    variables = with_changes(GATEWAY_PROVIDERS__IDP__PRESET="entra", GATEWAY_PROVIDERS__IDP__TENANT="contoso-id")
    del variables["GATEWAY_PROVIDERS__IDP__ISSUER"]
    assert settings_of(tmp_path, variables).providers["idp"].issuer == \
        "https://login.microsoftonline.com/contoso-id/v2.0"
    variables = with_changes(GATEWAY_PROVIDERS__IDP__PRESET="auth0", GATEWAY_PROVIDERS__IDP__DOMAIN="me.eu.auth0.com")
    del variables["GATEWAY_PROVIDERS__IDP__ISSUER"]
    assert settings_of(tmp_path, variables).providers["idp"].issuer == "https://me.eu.auth0.com"


def test_preset_missing_its_tenant_names_the_variable(tmp_path: Path) -> None:
    variables = with_changes(GATEWAY_PROVIDERS__IDP__PRESET="entra")
    del variables["GATEWAY_PROVIDERS__IDP__ISSUER"]
    problems = problems_of(tmp_path, variables)
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__ISSUER"]
    assert "TENANT" in problems[0]


def test_keycloak_preset_defaults_to_jwt(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, with_changes(GATEWAY_PROVIDERS__IDP__PRESET="keycloak"))
    assert settings.providers["idp"].validation == "jwt"


def test_unknown_preset_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PROVIDERS__IDP__PRESET="okta"))
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__PRESET"]


def test_github_validation_only_with_github_preset(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PROVIDERS__IDP__VALIDATION="github"))
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__VALIDATION"]


def test_introspection_needs_a_client_secret(tmp_path: Path) -> None:
    variables = with_changes(GATEWAY_PROVIDERS__IDP__VALIDATION="introspection")
    variables.pop("GATEWAY_PROVIDERS__IDP__CLIENT_SECRET", None)
    problems = problems_of(tmp_path, variables)
    assert named(problems) == ["GATEWAY_PROVIDERS__IDP__VALIDATION"]
    assert "CLIENT_SECRET" in problems[0]


def test_symmetric_or_none_algorithms_refused(tmp_path: Path) -> None:
    for alg in ("HS256", "none"):
        problems = problems_of(tmp_path, with_changes(GATEWAY_PROVIDERS__IDP__ALGORITHMS=f"RS256,{alg}"))
        assert named(problems) == ["GATEWAY_PROVIDERS__IDP__ALGORITHMS"], alg


def test_unknown_broker_refused(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_BROKER_URL="kafka://localhost:9092"))
    assert named(problems) == ["GATEWAY_BROKER_URL"]
    assert "memory://" in problems[0] and "redis://" in problems[0]


def test_redis_broker_accepted(tmp_path: Path) -> None:
    settings = settings_of(tmp_path, with_changes(GATEWAY_BROKER_URL="redis://localhost:6379/0"))
    assert settings.uses_redis and settings.redis_prefix == "gateway:"


def test_sentinel_and_cluster_urls_accepted(tmp_path: Path) -> None:
    for url in ("redis+sentinel://s1:26379,s2:26379,[::1]/mymaster/2", "redis+cluster://n1:7000,n2:7001",
                "rediss+cluster://user:pw@n1:7000/0"):
        assert settings_of(tmp_path, with_changes(GATEWAY_BROKER_URL=url)).uses_redis, url


def test_sentinel_and_cluster_url_mistakes_name_the_form(tmp_path: Path) -> None:
    for url, hint in (("redis+sentinel://s1:26379", "name the Sentinel service"),
                      ("redis+sentinel://s1:26379/mymaster/x", "the database must be a number"),
                      ("redis+sentinel://s1:99999/mymaster", "is not host:port"),
                      ("redis+cluster://n1:7000/3", "database 0 only"),
                      ("redis+cluster://n1:7000?timeout=1", "takes no query")):
        problems = problems_of(tmp_path, with_changes(GATEWAY_BROKER_URL=url))
        assert named(problems) == ["GATEWAY_BROKER_URL"] and hint in problems[0], (url, problems)


def test_min_replicas_needs_redis_and_a_cluster_prefix_no_tag(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_REDIS_MIN_REPLICAS="1"))
    assert named(problems) == ["GATEWAY_REDIS_MIN_REPLICAS"] and "GATEWAY_BROKER_URL" in problems[0]
    problems = problems_of(tmp_path, with_changes(GATEWAY_BROKER_URL="redis+cluster://n1:7000",
                                                  GATEWAY_REDIS_PREFIX="{chat}:"))
    assert named(problems) == ["GATEWAY_REDIS_PREFIX"] and "hash tag" in problems[0]
    settings = settings_of(tmp_path, with_changes(GATEWAY_BROKER_URL="redis://r:6379/0", GATEWAY_REDIS_PREFIX="{x}:",
                                                  GATEWAY_REDIS_MIN_REPLICAS="2"))
    assert settings.redis_min_replicas == 2  # one Redis: braces do no harm


def test_unparsable_providers_in_env_file(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_PROVIDERS="{bad"))
    assert named(problems) == ["GATEWAY_PROVIDERS"]
    assert ".env.example" in problems[0]


def test_unparsable_providers_in_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PROVIDERS", "{bad")
    problems = problems_of(tmp_path, GOOD)
    assert named(problems) == ["GATEWAY_PROVIDERS"]


def test_unparsable_number(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_SESSION_MAX_AGE="12h"))
    assert named(problems) == ["GATEWAY_SESSION_MAX_AGE"]
    assert "integer" in problems[0]


def test_bad_log_format(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_LOG_FORMAT="xml"))
    assert named(problems) == ["GATEWAY_LOG_FORMAT"]
    assert "'text'" in problems[0] and "'json'" in problems[0]


def test_gc_threshold_defaults_to_the_tuned_one_and_takes_three_numbers(tmp_path: Path) -> None:
    assert settings_of(tmp_path, GOOD).gc_threshold == (50_000, 10, 10)
    assert settings_of(tmp_path, with_changes(GATEWAY_GC_THRESHOLD="700, 10,10")).gc_threshold == (700, 10, 10)


@pytest.mark.parametrize("value", ["700,10", "0,10,10", "700,10,10,10", "7e2,10,10", "-1,10,10", "700;10;10", ""])
def test_a_bad_gc_threshold_says_what_it_takes(tmp_path: Path, value: str) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_GC_THRESHOLD=value))
    assert named(problems) == ["GATEWAY_GC_THRESHOLD"]
    assert "50000,10,10" in problems[0] and repr(value) in problems[0]


@pytest.mark.parametrize("origin", ["https://app.example.com/chat", "app.example.com", "ftp://app.example.com"])
def test_invalid_allowed_origin(tmp_path: Path, origin: str) -> None:
    problems = problems_of(tmp_path, with_changes(GATEWAY_ALLOWED_ORIGINS=f"https://ok.example.com,{origin}"))
    assert named(problems) == ["GATEWAY_ALLOWED_ORIGINS"]
    assert repr(origin) in problems[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, {
        "GATEWAY_PUBLIC_URL": "chat.example.com",
        "GATEWAY_SECRET_KEYS": "short",
        "GATEWAY_PROVIDERS__IDP__ISSUER": "https://idp.example.com",
        "GATEWAY_PROVIDERS__IDP__PRESET": "okta",
        "GATEWAY_ALLOWED_ORIGINS": "https://app.example.com/",
    })
    assert named(problems) == [
        "GATEWAY_PUBLIC_URL",
        "GATEWAY_SECRET_KEYS",
        "GATEWAY_PROVIDERS__IDP__PRESET",
        "GATEWAY_PROVIDERS__IDP__CLIENT_ID",
        "GATEWAY_ALLOWED_ORIGINS",
    ]
    assert all("\n" not in line for line in problems)


def test_problems_never_show_secret_values(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, with_changes(
        GATEWAY_SECRET_KEYS="too-short-secret", GATEWAY_PROVIDERS__IDP__CLIENT_SECRET="client-s3cret",
        GATEWAY_PROVIDERS__IDP__VALIDATION="jwt"))
    text = "\n".join(problems)
    assert "too-short-secret" not in text
    assert "client-s3cret" not in text


# --- .env.example: documents every setting, and nothing else ---------------------------------------

EXAMPLE = ROOT / ".env.example"
EXAMPLE_PROVIDER = "GATEWAY_PROVIDERS__KEYCLOAK__"
# `demo` is set only by `gateway demo`, never from the environment (see the test above): not a setting.
NOT_SETTINGS = {"demo"}
# Provider settings are documented as GATEWAY_PROVIDERS__<NAME>__*, not as one GATEWAY_PROVIDERS.
NESTED = {"providers"}


def example_variables() -> set[str]:
    """Names of the variables set (`NAME=`) or shown at their default (`# NAME=`) in .env.example."""
    text = EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^(?:#\s*)?(GATEWAY_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_documents_every_setting() -> None:
    documented = example_variables()
    expected = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields if name not in NOT_SETTINGS | NESTED}
    assert expected - documented == set()


def test_env_example_documents_every_provider_setting() -> None:
    documented = example_variables()
    expected = {f"{EXAMPLE_PROVIDER}{name.upper()}" for name in ProviderSettings.model_fields}
    assert expected - documented == set()


def test_env_example_documents_no_unknown_variable() -> None:
    known = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields if name not in NOT_SETTINGS | NESTED}
    known |= {f"{EXAMPLE_PROVIDER}{name.upper()}" for name in ProviderSettings.model_fields}
    assert example_variables() - known == set()


def test_env_example_shows_the_redirect_uri_to_register() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "https://chat.example.com/auth/keycloak/callback" in text
    assert "secrets.token_urlsafe" in text


def test_env_example_is_refused_only_for_its_placeholder_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=EXAMPLE)
    assert named(caught.value.problems) == ["GATEWAY_SECRET_KEYS"]
    assert "example value" in caught.value.problems[0]

    settings = load_settings(env_file=EXAMPLE, demo=True)
    assert settings.redirect_uri("keycloak") == "https://chat.example.com/auth/keycloak/callback"
