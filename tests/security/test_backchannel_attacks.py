"""Hostile logout tokens at POST /auth/{name}/backchannel-logout: each is answered 400 `invalid_request`
and changes nothing (the sign-in it names stays valid); only a genuine, fresh, unspent one ends it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import ISSUER, PUBLIC_URL, FakeIdP, SettingsFactory, SignIn
from tests.logout_tokens import DROP, logout_claims, logout_token

OTHER_ISSUER = "https://other-idp.test"


@pytest.fixture
def victim(idp: FakeIdP, make_settings: SettingsFactory, sign_in: SignIn) -> Iterator[TestClient]:
    """Alice, signed in with provider session sid-1; the provider advertises back-channel logout. A second
    provider ("other") is configured too."""
    idp.discovery["backchannel_logout_supported"] = True
    idp.sid = "sid-1"
    other = {"issuer": OTHER_ISSUER, "client_id": "other-client", "client_secret": "x"}
    idp.mock.get(f"{OTHER_ISSUER}/.well-known/openid-configuration").respond(json={
        **idp.discovery, "issuer": OTHER_ISSUER, "jwks_uri": f"{OTHER_ISSUER}/jwks"})
    idp.mock.get(f"{OTHER_ISSUER}/jwks").respond(json={"keys": [RSAKey.generate_key(2048, parameters={
        "kid": "o1"}).as_dict(private=False)]})
    settings = make_settings(providers={
        "idp": {"issuer": ISSUER, "client_id": idp.client_id, "client_secret": "s3cret"}, "other": other})
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as client:
        assert sign_in(client, "alice").status_code == 303
        yield client


def still_signed_in(client: TestClient) -> bool:
    return bool(client.get("/auth/session").json()["authenticated"])


def post_token(client: TestClient, token: str, provider: str = "idp") -> Any:
    # Another client on the same running app: the provider's request carries no browser cookie.
    return TestClient(client.app, base_url=PUBLIC_URL).post(f"/auth/{provider}/backchannel-logout",
                                                            data={"logout_token": token})


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part(header)}.{part(claims)}.{signature}"


def hostile(idp: FakeIdP) -> dict[str, str]:
    now = int(time.time())
    forger = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # the provider's kid, not its key
    secret = OctKey.import_key(b"s3cret-s3cret-s3cret-s3cret-s3cret")
    return {
        "bad signature": logout_token(idp, key=forger),
        "tampered claims": ".".join([logout_token(idp).split(".")[0],
                                     unsigned({}, logout_claims(idp, sid="sid-2")).split(".")[1],
                                     logout_token(idp).split(".")[2]]),
        "alg none": unsigned({"alg": "none"}, logout_claims(idp)),
        "alg none with a signature": unsigned({"alg": "none"}, logout_claims(idp), "AAAA"),
        "HS256 with the client secret": jwt.encode({"alg": "HS256", "kid": "k1"}, logout_claims(idp), secret,
                                                   algorithms=["HS256"]),
        "unknown kid": logout_token(idp, key=RSAKey.generate_key(2048, parameters={"kid": "k9"}),
                                    header={"alg": "RS256", "kid": "k9"}),
        "wrong iss": logout_token(idp, iss="https://evil.test"),
        "no iss": logout_token(idp, iss=DROP),
        "wrong aud": logout_token(idp, aud="someone-else"),
        "no aud": logout_token(idp, aud=DROP),
        "iat far in the past": logout_token(idp, iat=now - 3600),
        "iat in the future": logout_token(idp, iat=now + 3600),
        "no iat": logout_token(idp, iat=DROP),
        "iat not a number": logout_token(idp, iat="now"),
        "expired": logout_token(idp, exp=now - 600),
        "no jti": logout_token(idp, jti=DROP),
        "jti not a string": logout_token(idp, jti=7),
        "missing events": logout_token(idp, events=DROP),
        "events of another kind": logout_token(idp, events={"http://schemas.openid.net/event/other": {}}),
        "events not an object": logout_token(idp, events=["http://schemas.openid.net/event/backchannel-logout"]),
        "a nonce present (an ID token)": logout_token(idp, nonce="n-1"),
        "neither sid nor sub": logout_token(idp, sid=DROP),
        "sid not a string": logout_token(idp, sid=["sid-1"]),
        "sid with a newline": logout_token(idp, sid="sid-1\n"),
        "not a JWT": "not-a-jwt",
        "JWT with junk around it": " " + logout_token(idp),
        "header not JSON": "bm90IGpzb24." + logout_token(idp).split(".", 1)[1],
    }


HOSTILE = [
    "bad signature", "tampered claims", "alg none", "alg none with a signature", "HS256 with the client secret",
    "unknown kid", "wrong iss", "no iss", "wrong aud", "no aud", "iat far in the past", "iat in the future",
    "no iat", "iat not a number", "expired", "no jti", "jti not a string", "missing events",
    "events of another kind", "events not an object", "a nonce present (an ID token)", "neither sid nor sub",
    "sid not a string", "sid with a newline", "not a JWT", "JWT with junk around it", "header not JSON",
]


def test_every_hostile_case_is_tested(idp: FakeIdP) -> None:
    assert sorted(hostile(idp)) == sorted(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_logout_token_is_400_and_changes_nothing(victim: TestClient, idp: FakeIdP, case: str) -> None:
    answer = post_token(victim, hostile(idp)[case])
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request" and answer.json()["error_description"]
    assert answer.headers["cache-control"] == "no-store"
    assert still_signed_in(victim)


def test_the_genuine_token_ends_the_session_and_its_replay_is_refused(victim: TestClient, idp: FakeIdP) -> None:
    token = logout_token(idp)
    assert post_token(victim, token).status_code == 200
    assert not still_signed_in(victim)
    replay = post_token(victim, token)
    assert replay.status_code == 400 and "used before" in replay.json()["error_description"]


def test_a_token_for_another_providers_sessions_is_refused(victim: TestClient, idp: FakeIdP) -> None:
    # Signed by idp, posted to "other"'s endpoint: other's issuer and keys do not match.
    answer = post_token(victim, logout_token(idp), provider="other")
    assert answer.status_code in (400, 404), answer.text
    other = victim.app.state.gateway.providers.get("other")  # type: ignore[attr-defined]
    other.settings.backchannel_logout = "on"
    answer = post_token(victim, logout_token(idp), provider="other")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert still_signed_in(victim)


@pytest.mark.parametrize("body, content_type", [
    ("logout_token=" + "a" * (17 * 1024), "application/x-www-form-urlencoded"),
    ("", "application/x-www-form-urlencoded"),
    ("logout_token=a.b.c&logout_token=a.b.c", "application/x-www-form-urlencoded"),
    ('{"logout_token": "a.b.c"}', "application/json"),
    ("logout_token=%FF%FE", "application/x-www-form-urlencoded"),
    ("logout_token=caf\u00e9", "application/x-www-form-urlencoded; charset=utf-8"),
])
def test_a_bad_form_is_400(victim: TestClient, body: str, content_type: str) -> None:
    answer = TestClient(victim.app, base_url=PUBLIC_URL).post(
        "/auth/idp/backchannel-logout", content=body.encode(), headers={"Content-Type": content_type})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", answer.text
    assert still_signed_in(victim)


def test_a_body_over_the_limit_without_a_length_is_400(victim: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"logout_token="
        for _ in range(40):
            yield b"a" * 1024

    answer = TestClient(victim.app, base_url=PUBLIC_URL).post(
        "/auth/idp/backchannel-logout", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and "bytes" in answer.json()["error_description"]
    assert still_signed_in(victim)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(
    st.text(max_size=300),
    st.lists(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80),
             min_size=1, max_size=5).map(".".join),
))
def test_anything_as_a_logout_token_is_400_never_a_500(victim: TestClient, token: str) -> None:
    answer = TestClient(victim.app, base_url=PUBLIC_URL).post("/auth/idp/backchannel-logout",
                                                              data={"logout_token": token})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_request"
