"""GET /healthz (the process answers, nothing else consulted) and GET /readyz (providers' discovery loaded,
their credentials accepted, the store reachable; 503 naming each failing part)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import CLIENT_ID, ISSUER, PUBLIC_URL, FakeIdP, SettingsFactory
from tests.redis_support import redis_server

OTHER_ISSUER = "https://other-idp.test"


def started(app: object) -> TestClient:
    return TestClient(app, base_url=PUBLIC_URL, follow_redirects=False)  # type: ignore[arg-type]


@pytest.fixture
def discovery_down(idp: FakeIdP) -> Iterator[respx.Route]:
    route = idp.mock.routes["discovery"]
    route.side_effect = httpx.ConnectError("connection refused")
    yield route


def test_readyz_ok_when_discovery_loaded_and_store_reachable(client: TestClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_readyz_names_the_provider_whose_discovery_is_down(idp: FakeIdP, make_settings: SettingsFactory,
                                                            discovery_down: respx.Route,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with started(create_app(make_settings())) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"
        assert answer.json() == {"status": "unavailable", "failing": ["provider idp: discovery not loaded"]}

        # The provider comes back: the next probe (past the retry pause) loads discovery and passes.
        monkeypatch.setattr("gateway.providers.DISCOVERY_RETRY", 0.0)
        discovery_down.side_effect = lambda request: httpx.Response(200, json=idp.discovery)
        assert client.get("/readyz").status_code == 200


def test_readyz_names_only_the_failing_provider(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    idp.mock.get(f"{OTHER_ISSUER}/.well-known/openid-configuration").respond(503)
    settings = make_settings(providers={
        "idp": {"issuer": ISSUER, "client_id": CLIENT_ID},
        "other": {"issuer": OTHER_ISSUER, "client_id": CLIENT_ID},
    })
    with started(create_app(settings)) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["failing"] == ["provider other: discovery not loaded"]


def test_readyz_names_a_provider_that_refuses_the_gateways_introspection_credentials(
        idp: FakeIdP, make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture) -> None:
    idp.discovery["introspection_endpoint"] = f"{ISSUER}/introspect"
    introspect = idp.mock.post(f"{ISSUER}/introspect", name="introspect").respond(401)
    settings = make_settings(providers={"idp": {"issuer": ISSUER, "client_id": CLIENT_ID, "client_secret": "wrong",
                                                "validation": "introspection"}})
    with started(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200  # nothing has told it yet

        refused = client.get("/auth/check", headers={"Authorization": "Bearer some-user-token"})
        assert refused.status_code == 503  # the gateway's fault, never the user's
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["provider idp: refuses the gateway's client credentials"]
        assert "GATEWAY_PROVIDERS__IDP__CLIENT_SECRET" in caplog.text

        # Fixed at the provider: the next introspection succeeds, and readiness with it.
        introspect.respond(200, json={"active": True, "sub": "alice", "client_id": "someone-else"})
        assert client.get("/auth/check", headers={"Authorization": "Bearer another-token"}).status_code == 202
        assert client.get("/readyz").status_code == 200


def test_readyz_names_the_store_when_redis_goes_away(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    with redis_server() as (url, process, _argv):
        settings = make_settings(broker_url=url, redis_prefix=f"gateway-test:{uuid.uuid4().hex[:10]}:")
        with started(create_app(settings)) as client:
            assert client.get("/readyz").status_code == 200

            process.terminate()
            process.wait(10)
            answer = client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["failing"] == ["store: Redis unreachable"]
            assert client.get("/healthz").status_code == 200


def test_healthz_consults_nothing(idp: FakeIdP, make_settings: SettingsFactory,
                                  discovery_down: respx.Route) -> None:
    with started(create_app(make_settings())) as client:
        calls = discovery_down.call_count
        for _ in range(3):
            answer = client.get("/healthz")
            assert answer.status_code == 200
            assert answer.json() == {"status": "ok"}
        assert discovery_down.call_count == calls
        assert client.get("/readyz").status_code == 503
