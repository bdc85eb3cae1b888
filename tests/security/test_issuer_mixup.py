"""RFC 9207 (authorization server issuer identification): a provider that advertises
`authorization_response_iss_parameter_supported` names itself in every authorization response with `iss`.
A callback whose `iss` is wrong, another provider's, or missing is a mix-up attempt (or a provider that
broke its promise): refused with 400 before the code is exchanged. Without the promise, an `iss` that is
present must still be the provider's. Against the real provider: tests/interop/test_issuer_parameter.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import ISSUER, PUBLIC_URL, FakeIdP, SettingsFactory

OTHER_ISSUER = "https://other-idp.test"
ADVERTISED = {"authorization_response_iss_parameter_supported": True}


@pytest.fixture
def other(idp: FakeIdP) -> Iterator[FakeIdP]:
    """A second configured provider: its issuer is the "foreign" iss of a mix-up."""
    with respx.mock(assert_all_called=False) as mock:
        yield FakeIdP(mock, issuer=OTHER_ISSUER, client_id="other-client")


@contextmanager
def gateway(make_settings: SettingsFactory, idp: FakeIdP, other: FakeIdP, advertised: bool) -> Iterator[TestClient]:
    for provider in (idp, other):
        provider.discovery.update(ADVERTISED if advertised else {})
    providers = {
        "idp": {"issuer": ISSUER, "client_id": idp.client_id, "client_secret": "s3cret"},
        "other": {"issuer": OTHER_ISSUER, "client_id": other.client_id, "client_secret": "s3cret"},
    }
    with TestClient(create_app(make_settings(providers=providers)), base_url=PUBLIC_URL,
                    follow_redirects=False) as client:
        yield client


def callback(client: TestClient, idp: FakeIdP, iss: list[str]) -> httpx.Response:
    """Sign in at `idp`; its answer comes back to the callback with these `iss` parameters."""
    start = client.get("/login/idp")
    assert start.status_code == 302
    url = idp.authorize(start.headers["location"], "alice")
    return client.get(f"{url}&{urlencode([('iss', value) for value in iss])}" if iss else url)


def exchanges(idp: FakeIdP) -> int:
    return int(idp.mock.routes["token"].call_count)


def assert_refused(answer: httpx.Response, idp: FakeIdP) -> None:
    assert answer.status_code == 400, answer.text
    assert 'href="/login"' in answer.text  # the way out: start again
    assert not any(h.startswith("gateway_token=") and 'gateway_token=""' not in h
                   for h in answer.headers.get_list("set-cookie"))
    assert exchanges(idp) == 0  # refused before the code went anywhere


def test_the_providers_own_iss_signs_in(make_settings: SettingsFactory, idp: FakeIdP, other: FakeIdP) -> None:
    with gateway(make_settings, idp, other, advertised=True) as client:
        answer = callback(client, idp, [ISSUER])
        assert answer.status_code == 303, answer.text
        assert "gateway_token" in client.cookies


@pytest.mark.parametrize("iss", [
    ["https://evil.test"],             # wrong
    [OTHER_ISSUER],                    # foreign: another provider this gateway trusts
    [],                                # missing, though promised
    [ISSUER + "/"],                    # near misses: the comparison is exact (RFC 9207 §2.4)
    [ISSUER.upper()],
    [f"{ISSUER}\n"],
    [""],
    [ISSUER, "https://evil.test"],     # two answers in one
    ["https://evil.test", ISSUER],
], ids=["wrong", "foreign", "missing", "trailing-slash", "case", "newline", "empty", "two", "two-reversed"])
def test_a_wrong_foreign_or_missing_iss_is_400(make_settings: SettingsFactory, idp: FakeIdP, other: FakeIdP,
                                               iss: list[str]) -> None:
    with gateway(make_settings, idp, other, advertised=True) as client:
        assert_refused(callback(client, idp, iss), idp)
        assert "gateway_token" not in client.cookies


def test_without_the_promise_no_iss_still_signs_in(make_settings: SettingsFactory, idp: FakeIdP,
                                                   other: FakeIdP) -> None:
    with gateway(make_settings, idp, other, advertised=False) as client:
        assert callback(client, idp, []).status_code == 303


def test_without_the_promise_the_right_iss_signs_in(make_settings: SettingsFactory, idp: FakeIdP,
                                                    other: FakeIdP) -> None:
    with gateway(make_settings, idp, other, advertised=False) as client:
        assert callback(client, idp, [ISSUER]).status_code == 303


@pytest.mark.parametrize("iss", [["https://evil.test"], [OTHER_ISSUER], [ISSUER + "/"]])
def test_without_the_promise_a_wrong_iss_is_still_400(make_settings: SettingsFactory, idp: FakeIdP,
                                                      other: FakeIdP, iss: list[str]) -> None:
    with gateway(make_settings, idp, other, advertised=False) as client:
        assert_refused(callback(client, idp, iss), idp)


def test_a_refused_iss_leaves_the_sign_in_to_be_finished(make_settings: SettingsFactory, idp: FakeIdP,
                                                         other: FakeIdP) -> None:
    # A forged answer must not spend the state of the genuine one still on its way.
    with gateway(make_settings, idp, other, advertised=True) as client:
        start = client.get("/login/idp")
        url = idp.authorize(start.headers["location"], "alice")
        assert_refused(client.get(f"{url}&iss=https%3A%2F%2Fevil.test"), idp)
        assert client.get(f"{url}&{urlencode({'iss': ISSUER})}").status_code == 303


@pytest.mark.parametrize(("iss", "code"), [([], "iss_missing"), (["https://evil.test"], "iss_mismatch"),
                                           ([ISSUER, ISSUER], "iss_repeated")])
def test_the_log_says_which_check_failed_without_quoting_it(make_settings: SettingsFactory, idp: FakeIdP,
                                                            other: FakeIdP, caplog: pytest.LogCaptureFixture,
                                                            iss: list[str], code: str) -> None:
    with gateway(make_settings, idp, other, advertised=True) as client:
        assert_refused(callback(client, idp, iss), idp)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.auth" and "failed" in r.getMessage()]
    assert line == f"sign-in at idp failed: IssuerMismatch {code}"
