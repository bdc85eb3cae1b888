"""RFC 9207 against a certified provider: panva's oidc-provider advertises
`authorization_response_iss_parameter_supported` and names itself with `iss` in every authorization response.
Its genuine answer signs in; the same answer with `iss` tampered or removed is refused before the code is
exchanged, and the genuine one still works afterwards. The respx side: tests/security/test_issuer_mixup.py."""

from __future__ import annotations

import httpx
import pytest

from tests.interop.conftest import PROVIDER_NAME, ProviderClient, authorize


def start_sign_in(browser: httpx.Client, gateway: str, user: str) -> httpx.URL:
    """Through the gateway's /login/panva and the provider's pages; the callback URL the provider sends back."""
    start = browser.get(f"{gateway}/login/{PROVIDER_NAME}", params={"next": "/chat"})
    assert start.status_code == 302, start.text
    return authorize(browser, start.headers["location"], user)


def test_the_provider_promises_iss(provider: ProviderClient) -> None:
    assert provider.metadata["authorization_response_iss_parameter_supported"] is True


def test_the_real_providers_answer_signs_in(gateway: str, issuer: str) -> None:
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        callback = start_sign_in(browser, gateway, "alice")
        assert callback.params.get("iss") == issuer
        done = browser.get(str(callback))
        assert done.status_code == 303, done.text[:500]
        assert done.headers["location"] == "/chat"
        assert "gateway_token" in browser.cookies


@pytest.mark.parametrize("tamper", ["wrong", "trailing-slash", "removed", "repeated"])
def test_a_tampered_iss_is_refused_before_the_exchange(gateway: str, issuer: str, tamper: str) -> None:
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        callback = start_sign_in(browser, gateway, "mallory")
        tampered = {
            "wrong": callback.copy_set_param("iss", "http://127.0.0.1:1"),
            "trailing-slash": callback.copy_set_param("iss", issuer + "/"),
            "removed": callback.copy_remove_param("iss"),
            "repeated": callback.copy_add_param("iss", "http://127.0.0.1:1"),
        }[tamper]
        refused = browser.get(str(tampered))
        assert refused.status_code == 400, refused.text[:500]
        assert 'href="/login"' in refused.text
        assert "gateway_token" not in browser.cookies
        # Not exchanged: the provider's code and the gateway's state are both still good.
        done = browser.get(str(callback))
        assert done.status_code == 303, done.text[:500]
        assert "gateway_token" in browser.cookies
