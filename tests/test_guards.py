"""Guards on the test set-up itself: if these fail, the other tests may be passing for the wrong reason."""

from __future__ import annotations

import importlib.util

import pytest
import respx
from starlette.testclient import TestClient

from tests.conftest import FakeIdP


def test_httpx2_is_not_installed() -> None:
    # authlib prefers httpx2 when importable, and respx patches only httpx: every mock would be bypassed.
    assert importlib.util.find_spec("httpx2") is None, "httpx2 is installed: pin it out (see constraints.txt)"


def test_respx_intercepts_authlibs_token_exchange(client: TestClient, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    before = idp.mock.routes["token"].call_count
    client.get(idp.authorize(start.headers["location"]))
    assert idp.mock.routes["token"].call_count == before + 1
    assert idp.mock.routes["jwks"].called


def test_unmocked_provider_calls_fail_loudly() -> None:
    import httpx

    with respx.mock(assert_all_called=False), pytest.raises(respx.models.AllMockedAssertionError):
        httpx.get("https://somewhere.example/")
