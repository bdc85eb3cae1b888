"""Valid but suspicious settings give warning lines; ordinary ones give none."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.config_warnings import config_warnings
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory

GITHUB = {"gh": {"preset": "github", "client_id": "Iv1.x", "client_secret": "s"}}


def test_plain_http_off_loopback_warns(make_settings: SettingsFactory) -> None:
    warnings = config_warnings(make_settings(public_url="http://chat.example.com"))

    assert len(warnings) == 1
    assert warnings[0].startswith("GATEWAY_PUBLIC_URL: http://chat.example.com is plain http")


@pytest.mark.parametrize("public_url", ["https://chat.example.com", "http://127.0.0.1:8000", "http://localhost:8000",
                                        "http://[::1]:8000"])
def test_https_or_loopback_does_not_warn(make_settings: SettingsFactory, public_url: str) -> None:
    assert config_warnings(make_settings(public_url=public_url)) == []


@pytest.mark.parametrize("provider", [
    GITHUB,
    {"google": {"preset": "google", "client_id": "x.apps.googleusercontent.com"}},
    {"gitlab": {"preset": "gitlab", "client_id": "x"}},
])
def test_an_open_sign_up_provider_without_allow_lists_warns(make_settings: SettingsFactory,
                                                             provider: dict[str, Any]) -> None:
    warnings = config_warnings(make_settings(public_url="https://chat.example.com", providers=provider))

    assert len(warnings) == 1
    assert warnings[0].startswith("GATEWAY_ALLOWED_*: all empty")
    assert "anyone with an account can sign in" in warnings[0]


@pytest.mark.parametrize("allow", [{"allowed_emails": "a@example.com"}, {"allowed_email_domains": "example.com"},
                                   {"allowed_users": "gh:octocat"}, {"allowed_groups": "org/team"}])
def test_any_allow_list_silences_it(make_settings: SettingsFactory, allow: dict[str, str]) -> None:
    assert config_warnings(make_settings(public_url="https://chat.example.com", providers=GITHUB, **allow)) == []


def test_own_servers_of_open_providers_do_not_warn(make_settings: SettingsFactory) -> None:
    providers = {"gh": {"preset": "github", "client_id": "x", "issuer": "https://github.example.com"},
                 "gl": {"preset": "gitlab", "client_id": "x", "issuer": "https://gitlab.example.com"}}

    assert config_warnings(make_settings(public_url="https://chat.example.com", providers=providers)) == []


def test_forwarded_for_without_trusted_proxies_warns_once(idp: FakeIdP, make_settings: SettingsFactory,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(make_settings()), base_url=PUBLIC_URL) as client, \
            caplog.at_level(logging.WARNING, logger="gateway.proxy"):
        client.get("/healthz")
        assert caplog.records == []
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.8"})

    warnings = [record.getMessage() for record in caplog.records if record.name == "gateway.proxy"]
    assert len(warnings) == 1
    assert "GATEWAY_TRUSTED_PROXIES is unset" in warnings[0]
    assert "GATEWAY_TRUSTED_PROXIES=testclient" in warnings[0]


def test_forwarded_for_from_a_trusted_proxy_does_not_warn(idp: FakeIdP, make_settings: SettingsFactory,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(make_settings(trusted_proxies="10.0.0.5")), base_url=PUBLIC_URL) as client, \
            caplog.at_level(logging.WARNING, logger="gateway.proxy"):
        client.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})

    assert [record for record in caplog.records if record.name == "gateway.proxy"] == []
