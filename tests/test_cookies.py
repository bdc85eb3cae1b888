"""The sealed token cookie (docs/sessions.md): Sealer, TokenCookie, and rotation through the app."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.cookies import TokenCookie, TokenSession
from gateway.sealing import Sealer, derive_key
from tests.conftest import OLD_SECRET, PUBLIC_URL, SECRET, FakeIdP, SettingsFactory, SignIn

PURPOSE = "token cookie"  # what create_app uses for the token cookie
NEW_SECRET = "brand-new-secret-key-0123456789-abcdefghij"
FOREIGN_SECRET = "someone-elses-secret-key-0123456789-abcdef"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_sealer_round_trip() -> None:
    sealer = Sealer([SECRET], PURPOSE)
    payload = {"p": "idp", "t": "token-value", "e": 123.5, "groups": ["a", "b"]}
    sealed = sealer.seal(payload)
    assert "token-value" not in sealed
    assert sealed.isascii()
    assert sealer.open(sealed, max_age=60) == payload


def test_sealer_refuses_a_tampered_value() -> None:
    sealer = Sealer([SECRET], PURPOSE)
    sealed = sealer.seal({"t": "token-value"})
    middle = len(sealed) // 2
    flipped = "A" if sealed[middle] != "A" else "B"
    assert sealer.open(sealed[:middle] + flipped + sealed[middle + 1:], max_age=60) is None
    assert sealer.open(sealed[:-4], max_age=60) is None
    assert sealer.open(sealed[:middle] + "AAAA" + sealed[middle:], max_age=60) is None


def test_sealer_refuses_a_value_sealed_with_an_unknown_key() -> None:
    sealed = Sealer([FOREIGN_SECRET], PURPOSE).seal({"t": "token-value"})
    assert Sealer([SECRET], PURPOSE).open(sealed, max_age=60) is None
    assert Sealer([SECRET, OLD_SECRET], PURPOSE).open(sealed, max_age=60) is None


def test_sealer_keys_are_separated_by_purpose() -> None:
    sealed = Sealer([SECRET], "login state").seal({"t": "token-value"})
    assert Sealer([SECRET], PURPOSE).open(sealed, max_age=60) is None


def test_sealer_key_rotation() -> None:
    old_sealed = Sealer([OLD_SECRET], PURPOSE).seal({"t": "old"})
    rotated = Sealer([NEW_SECRET, OLD_SECRET], PURPOSE)
    assert rotated.open(old_sealed, max_age=60) == {"t": "old"}
    # The first key seals: once the old key is retired, new values still open.
    new_sealed = rotated.seal({"t": "new"})
    assert Sealer([NEW_SECRET], PURPOSE).open(new_sealed, max_age=60) == {"t": "new"}
    assert Sealer([OLD_SECRET], PURPOSE).open(new_sealed, max_age=60) is None


def test_sealer_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        Sealer([], PURPOSE)


def test_sealer_expiry_follows_the_injected_clock(clock: Clock) -> None:
    sealer = Sealer([SECRET], PURPOSE, clock=clock)
    sealed = sealer.seal({"t": "x"})
    clock.now = T0 + 600
    assert sealer.open(sealed, max_age=600) == {"t": "x"}
    clock.now = T0 + 601
    assert sealer.open(sealed, max_age=600) is None
    assert sealer.open(sealed, max_age=3600) == {"t": "x"}


def test_sealer_refuses_values_from_the_future(clock: Clock) -> None:
    sealed = Sealer([SECRET], PURPOSE, clock=clock).seal({"t": "x"})
    clock.now = T0 - 3600
    assert Sealer([SECRET], PURPOSE, clock=clock).open(sealed, max_age=7200) is None


@pytest.mark.parametrize("value", ["", "junk", "gAAAAA", "é", "gAAAAAB\u00e9xyz", "\x00\x01", "=" * 40,
                                   "a" * 5000, "gAAAAA" + "A" * 100])
def test_sealer_refuses_malformed_values(value: str) -> None:
    assert Sealer([SECRET], PURPOSE).open(value, max_age=60) is None


@pytest.mark.parametrize("plaintext", [b"not json", b"[1, 2]", b'"a string"', b"\xff\xfe"])
def test_sealer_refuses_a_genuine_seal_that_is_not_a_json_object(plaintext: bytes) -> None:
    fernet = Fernet(base64.urlsafe_b64encode(derive_key(SECRET, PURPOSE)))
    sealed = fernet.encrypt(plaintext).decode()
    assert Sealer([SECRET], PURPOSE).open(sealed, max_age=60) is None


def _session(token: str, expires_at: float | None, auth_time: float = T0) -> TokenSession:
    return TokenSession("idp", token, expires_at, auth_time)


def _cookie(https: bool, clock: Clock, max_age: int = 3600) -> TokenCookie:
    return TokenCookie(Sealer([SECRET], PURPOSE, clock=clock), https=https, max_age=max_age, clock=clock)


def _set_cookie_header(cookie: TokenCookie, session: TokenSession) -> str:
    response = Response()
    cookie.set(response, session)
    headers = [value for key, value in response.raw_headers if key == b"set-cookie"]
    assert len(headers) == 1
    return headers[0].decode("latin-1")


def _attributes(header: str) -> tuple[str, dict[str, str]]:
    pair, *rest = (part.strip() for part in header.split(";"))
    attributes = {}
    for part in rest:
        key, _, value = part.partition("=")
        attributes[key.lower()] = value
    return pair, attributes


def test_token_cookie_name_on_http_and_https(clock: Clock) -> None:
    assert _cookie(https=False, clock=clock).name == "gateway_token"
    assert _cookie(https=True, clock=clock).name == "__Host-gateway_token"


def test_token_cookie_flags_on_http(clock: Clock) -> None:
    header = _set_cookie_header(_cookie(https=False, clock=clock), _session("tok", T0 + 600))
    pair, attributes = _attributes(header)
    assert pair.startswith("gateway_token=")
    value = pair.partition("=")[2].strip('"')  # quoted when it ends in padding; the server reads it unquoted
    opened = Sealer([SECRET], PURPOSE, clock=clock).open(value, max_age=3600)
    assert opened is not None and opened["t"] == "tok"  # sealed, and only the sealer opens it
    assert "httponly" in attributes
    assert attributes["samesite"] == "lax"
    assert attributes["path"] == "/"
    assert "secure" not in attributes
    assert "domain" not in attributes


def test_token_cookie_flags_on_https(clock: Clock) -> None:
    header = _set_cookie_header(_cookie(https=True, clock=clock), _session("tok", T0 + 600))
    pair, attributes = _attributes(header)
    assert pair.startswith("__Host-gateway_token=")
    assert "secure" in attributes
    assert "httponly" in attributes
    assert attributes["samesite"] == "lax"
    assert attributes["path"] == "/"
    assert "domain" not in attributes  # __Host- cookies must not name a domain


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [(T0 + 600, 600), (T0 + 3600, 3600), (T0 + 99_999, 3600), (None, 3600), (T0 - 10, 0)],
)
def test_token_cookie_max_age_is_the_earlier_limit(clock: Clock, expires_at: float | None,
                                                   expected: int) -> None:
    cookie = _cookie(https=False, clock=clock, max_age=3600)
    _, attributes = _attributes(_set_cookie_header(cookie, _session("tok", expires_at)))
    assert attributes["max-age"] == str(expected)
    assert cookie.seal(_session("tok", expires_at))[1] == expected


def test_token_cookie_max_age_counts_from_sign_in(clock: Clock) -> None:
    cookie = _cookie(https=False, clock=clock, max_age=3600)
    assert cookie.seal(_session("tok", None, auth_time=T0 - 3000))[1] == 600
    assert cookie.seal(_session("tok", T0 + 300, auth_time=T0 - 3000))[1] == 300


def test_token_cookie_max_age_follows_the_clock(clock: Clock) -> None:
    cookie = _cookie(https=False, clock=clock, max_age=3600)
    session = _session("tok", T0 + 1800)
    assert cookie.seal(session)[1] == 1800
    clock.now = T0 + 1000
    assert cookie.seal(session)[1] == 800


def test_token_too_large_even_for_chunk_cookies_is_refused(clock: Clock) -> None:
    # Bigger tokens are split over chunk cookies (tests/test_cookie_chunks.py), up to a total.
    cookie = _cookie(https=False, clock=clock)
    token = secrets.token_urlsafe(9000)  # random: compression cannot save it
    with pytest.raises(ValueError, match="too large"):
        cookie.seal(_session(token, None))
    with pytest.raises(ValueError, match="too large"):
        cookie.set(Response(), _session(token, None))


def test_token_cookie_clear(clock: Clock) -> None:
    response = Response()
    _cookie(https=True, clock=clock).clear(response)
    pair, attributes = _attributes(response.headers["set-cookie"])
    assert pair == '__Host-gateway_token=""'
    assert attributes["max-age"] == "0"
    assert "secure" in attributes
    assert attributes["path"] == "/"


# Through the app: what /chat does with each cookie.

def _sealed_cookie(secret: str, token: str) -> str:
    """What the app would set, sealed under `secret` alone."""
    cookie = TokenCookie(Sealer([secret], PURPOSE), https=False, max_age=3600)
    return cookie.seal(_session(token, None, auth_time=time.time()))[0]


def _assert_sent_to_login(response_location: str | None, status: int) -> None:
    assert status == 303
    assert response_location == "/login?next=%2Fchat"


def test_tampered_cookie_is_treated_like_no_cookie(client: TestClient, sign_in: SignIn) -> None:
    no_cookie = client.get("/chat")
    _assert_sent_to_login(no_cookie.headers.get("location"), no_cookie.status_code)
    sign_in(client)
    sealed = client.cookies["gateway_token"]
    assert client.get("/chat").status_code == 200
    middle = len(sealed) // 2
    client.cookies.delete("gateway_token")  # replaced, as a browser holds one cookie of a name
    client.cookies.set("gateway_token", sealed[:middle] + ("A" if sealed[middle] != "A" else "B")
                       + sealed[middle + 1:])
    tampered = client.get("/chat")
    _assert_sent_to_login(tampered.headers.get("location"), tampered.status_code)
    client.cookies.delete("gateway_token")
    client.cookies.set("gateway_token", "junk")
    junk = client.get("/chat")
    _assert_sent_to_login(junk.headers.get("location"), junk.status_code)


@pytest.fixture
def rotated_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(secret_keys=[SECRET, OLD_SECRET])
    with TestClient(create_app(settings), base_url=PUBLIC_URL, follow_redirects=False) as test_client:
        yield test_client


def test_cookie_sealed_with_a_retired_key_still_works(rotated_client: TestClient, idp: FakeIdP) -> None:
    rotated_client.cookies.set("gateway_token", _sealed_cookie(OLD_SECRET, idp.issue_token("bob")))
    page = rotated_client.get("/chat")
    assert page.status_code == 200
    assert "Signed in as <strong>Bob</strong>" in page.text


def test_cookie_sealed_with_the_current_key_works(rotated_client: TestClient, idp: FakeIdP) -> None:
    rotated_client.cookies.set("gateway_token", _sealed_cookie(SECRET, idp.issue_token("bob")))
    assert rotated_client.get("/chat").status_code == 200


def test_cookie_sealed_with_a_key_not_in_the_list_is_refused(rotated_client: TestClient,
                                                             idp: FakeIdP) -> None:
    rotated_client.cookies.set("gateway_token", _sealed_cookie(FOREIGN_SECRET, idp.issue_token("bob")))
    response = rotated_client.get("/chat")
    _assert_sent_to_login(response.headers.get("location"), response.status_code)
    assert idp.mock.routes["userinfo"].call_count == 0  # refused before any provider call


def test_retired_key_dropped_from_the_list_no_longer_opens(client: TestClient, idp: FakeIdP) -> None:
    client.cookies.set("gateway_token", _sealed_cookie(OLD_SECRET, idp.issue_token("bob")))
    response = client.get("/chat")
    _assert_sent_to_login(response.headers.get("location"), response.status_code)


@pytest.mark.parametrize("payload", [{"p": "", "t": "tok", "e": None}, {"p": "idp", "t": "", "e": None}])
def test_a_genuine_seal_without_a_token_or_provider_is_no_cookie(clock: Clock, payload: dict[str, object]) -> None:
    # Found by tests/security/test_fuzz_parsers.py: an empty token became credentials with an empty token.
    cookie = _cookie(https=False, clock=clock)
    sealed = cookie.sealer.seal({**payload, "a": T0})
    request = Request({"type": "http", "headers": [(b"cookie", f"gateway_token={sealed}".encode())]})
    assert cookie.read(request) is None
