"""A copy of the sign-in's cookies (a shared computer, a stolen backup, malware) kept past a logout, with a
provider that has no revocation endpoint: the provider would go on honouring the refresh token, so the
gateway must refuse the sign-in's refresh capability itself — on every instance."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import PUBLIC_URL, FakeIdP, SettingsFactory, SignIn
from tests.security.sessions import (
    Kept,
    cookie_header,
    copy_cookies,
    issue_refresh_tokens,
    same_origin,
    set_cookie_names,
    without,
)
from tests.test_logout import csrf_of


@pytest.fixture
def refresh_subjects(idp: FakeIdP) -> dict[str, str]:
    assert "revocation_endpoint" not in idp.discovery  # the case that matters: the provider cannot forget
    return issue_refresh_tokens(idp)


def refresh_with(client: TestClient, cookies: list[Kept]) -> tuple[int, set[str]]:
    answer = client.post("/auth/refresh", headers={"Cookie": cookie_header(cookies, "/auth/refresh"),
                                                   **same_origin(PUBLIC_URL)})
    return answer.status_code, set_cookie_names(answer)


def log_out_with(client: TestClient, cookies: list[Kept]) -> None:
    csrf = csrf_of(client.get("/chat", headers={"Cookie": cookie_header(cookies, "/chat")}).text)
    answer = client.post("/logout", data={"csrf": csrf}, headers={"Cookie": cookie_header(cookies, "/logout")})
    assert answer.status_code in (200, 303)


def signed_in(client: TestClient, cookies: list[Kept]) -> bool:
    return bool(client.get("/auth/session", headers={"Cookie": cookie_header(cookies, "/auth/session")})
                .json()["authenticated"])


def test_a_copied_refresh_cookie_is_refused_after_logout(client: TestClient, sign_in: SignIn,
                                                         refresh_subjects: dict[str, str]) -> None:
    sign_in(client, "vic")
    copy = copy_cookies(client)
    log_out_with(client, copy)
    status, set_names = refresh_with(client, copy)
    assert status == 401
    assert "gateway_token" not in set_names


def test_the_copy_is_refused_after_a_logout_made_once_the_token_cookie_had_expired(
        client: TestClient, sign_in: SignIn, refresh_subjects: dict[str, str]) -> None:
    sign_in(client, "vic")
    copy = copy_cookies(client)
    # The access token's cookie ran out (its Max-Age); the page is still open and the user logs out.
    csrf = csrf_of(client.get("/chat").text)
    client.cookies.delete("gateway_token")
    assert client.post("/logout", data={"csrf": csrf}).status_code in (200, 303)
    assert refresh_with(client, without(copy, "gateway_token"))[0] == 401


def test_token_cookies_the_copy_minted_before_the_logout_end_with_it(client: TestClient, sign_in: SignIn,
                                                                     refresh_subjects: dict[str, str]) -> None:
    sign_in(client, "vic")
    copy = copy_cookies(client)
    client.cookies.clear()
    status, _ = refresh_with(client, copy)  # the attacker refreshes first: a new access token of their own
    assert status == 204
    minted = [*without(copy, "gateway_token"), *(k for k in copy_cookies(client) if k.name == "gateway_token")]
    assert signed_in(client, minted)
    client.cookies.clear()
    log_out_with(client, copy)  # the victim logs out with the cookies they have
    assert not signed_in(client, minted)


@pytest.fixture
def two_instances(idp: FakeIdP, make_settings: SettingsFactory, redis_url: str,
                  redis_prefix: str) -> Iterator[tuple[TestClient, TestClient]]:
    settings = make_settings(broker_url=redis_url, redis_prefix=redis_prefix)
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as a, \
            TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as b:
        yield a, b


def test_a_logout_on_one_instance_ends_the_refresh_on_another(two_instances: tuple[TestClient, TestClient],
                                                              sign_in: SignIn,
                                                              refresh_subjects: dict[str, str]) -> None:
    a, b = two_instances
    sign_in(a, "vic")
    copy = copy_cookies(a)
    log_out_with(a, copy)
    denied_a, denied_b = (client.app.state.gateway.authenticator.denied for client in (a, b))  # type: ignore[attr-defined]
    deadline = time.monotonic() + 3
    while len(denied_b) < len(denied_a) and time.monotonic() < deadline:  # B hears of it through Redis
        time.sleep(0.02)
    assert refresh_with(b, copy)[0] == 401
