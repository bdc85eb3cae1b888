"""GET /auth/check for nginx `auth_request` and Traefik ForwardAuth: 202 with X-Auth-Request-* for a valid
cookie or bearer token (the chat's credentials, cache and allow-lists), 401, 403 for the per-app filters,
503 when the provider cannot answer; and apps on sibling hosts through GATEWAY_COOKIE_DOMAIN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from tests.conftest import FakeIdP, SettingsFactory, SignIn

TESTDATA = Path(__file__).parent / "fixtures" / "redirects"
GATEWAY_URL = "https://auth.example.com"
APP_URL = "https://app.example.com/dashboard?tab=1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no logout form on the page"
    return found.group(1)


# --- the answers ---------------------------------------------------------------------------------------

def test_a_signed_in_browser_gets_202_with_its_identity(client: TestClient, sign_in: SignIn, idp: FakeIdP) -> None:
    start = client.get("/login/idp")
    assert client.get(idp.authorize(start.headers["location"], "alice", groups=["staff", "dev"])).status_code == 303

    answer = client.get("/auth/check")
    assert answer.status_code == 202
    assert answer.headers["x-auth-request-user"] == "Alice"
    assert answer.headers["x-auth-request-email"] == "alice@example.com"
    assert answer.headers["x-auth-request-groups"] == "dev,staff"
    assert answer.headers["x-auth-request-subject"] == "idp:alice"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.content == b""


def test_a_bearer_token_gets_202_and_is_cached_like_the_chats(client: TestClient, idp: FakeIdP) -> None:
    token = idp.issue_token("bob", groups=["ops"])
    for _ in range(3):
        answer = client.get("/auth/check", headers=bearer(token))
        assert answer.status_code == 202
        assert (answer.headers["x-auth-request-user"], answer.headers["x-auth-request-email"],
                answer.headers["x-auth-request-groups"]) == ("Bob", "bob@example.com", "ops")
    assert idp.mock.routes["userinfo"].call_count == 1


def test_no_credentials_is_401_with_a_challenge(client: TestClient) -> None:
    answer = client.get("/auth/check")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert "x-auth-request-user" not in answer.headers


def test_an_invalid_token_is_401_invalid_token(client: TestClient) -> None:
    answer = client.get("/auth/check", headers=bearer("not-a-token-the-provider-knows"))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="gateway", error="invalid_token"'


def test_a_forged_cookie_is_401(client: TestClient) -> None:
    answer = client.get("/auth/check", headers={"Cookie": "gateway_token=forged-value"})
    assert answer.status_code == 401


def test_provider_down_is_503_never_401(client: TestClient, idp: FakeIdP) -> None:
    idp.mock.routes["userinfo"].side_effect = httpx.ConnectError("connection refused")
    answer = client.get("/auth/check", headers=bearer(idp.issue_token("carol")))
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"


@pytest.mark.parametrize(("query", "status"), [
    ("allowed_groups=admins", 403),
    ("allowed_groups=admins,staff", 202),
    ("allowed_groups=Staff", 403),  # groups compare exactly, as GATEWAY_ALLOWED_GROUPS does
    ("allowed_emails=someone@example.com", 403),
    ("allowed_emails=someone@example.com,ALICE@Example.com", 202),  # emails ignore ASCII case
    ("allowed_groups=staff&allowed_emails=someone@example.com", 403),  # both filters apply
    ("allowed_groups=staff&allowed_emails=alice@example.com", 202),
    ("allowed_groups=&allowed_emails=", 202),  # empty filters restrict nothing
])
def test_per_app_filters(client: TestClient, idp: FakeIdP, query: str, status: int) -> None:
    token = idp.issue_token("alice", groups=["staff"])
    answer = client.get(f"/auth/check?{query}", headers=bearer(token))
    assert answer.status_code == status
    assert ("x-auth-request-user" in answer.headers) == (status == 202)


def test_an_unverified_email_passes_no_email_filter(client: TestClient, idp: FakeIdP) -> None:
    token = idp.issue_token("mallory", email="boss@example.com", email_verified=False)
    assert client.get("/auth/check?allowed_emails=boss@example.com", headers=bearer(token)).status_code == 403
    assert client.get("/auth/check", headers=bearer(token)).status_code == 202


def test_the_gateways_own_allow_lists_apply(idp: FakeIdP, make_settings: SettingsFactory) -> None:
    with TestClient(create_app(make_settings(allowed_groups=["staff"]))) as client:
        assert client.get("/auth/check", headers=bearer(idp.issue_token("eve"))).status_code == 403
        assert client.get("/auth/check", headers=bearer(idp.issue_token("sam", groups=["staff"]))).status_code == 202


@pytest.mark.parametrize("name", ["José Müller-Øster", "李小龙", "Eve\r\nX-Admin: yes", "Tab\there"])
def test_names_that_are_no_header_values_are_percent_encoded(client: TestClient, idp: FakeIdP, name: str) -> None:
    token = idp.issue_token("u1", name=name, groups=["Ärzte", "staff"])
    answer = client.get("/auth/check", headers=bearer(token))
    assert answer.status_code == 202
    user = answer.headers["x-auth-request-user"]
    assert user.isascii() and user.isprintable()
    assert unquote(user) == name
    assert "x-admin" not in answer.headers
    assert answer.headers["x-auth-request-groups"] == quote("staff,Ärzte", safe=" @,./:-_+")


# --- apps on sibling hosts: GATEWAY_COOKIE_DOMAIN and GATEWAY_ALLOWED_REDIRECT_DOMAINS -----------------

@pytest.fixture
def sibling_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    settings = make_settings(public_url=GATEWAY_URL, cookie_domain="example.com",
                             allowed_redirect_domains=[".example.com"])
    with TestClient(create_app(settings), base_url=GATEWAY_URL, follow_redirects=False) as test_client:
        yield test_client


def token_cookie_headers(response: httpx.Response) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if "gateway_token" in h]


def test_a_sibling_app_is_protected_end_to_end(sibling_client: TestClient, idp: FakeIdP) -> None:
    # nginx in front of app.example.com got 401 from /auth/check and sent the browser to sign in.
    page = sibling_client.get("/login", params={"next": APP_URL})
    (href,) = re.findall(r'href="(/login/idp\?next=[^"]*)"', page.text)
    start = sibling_client.get(href.replace("&amp;", "&"))
    assert start.status_code == 302
    done = sibling_client.get(idp.authorize(start.headers["location"], "alice", groups=["staff"]))
    assert done.status_code == 303
    assert done.headers["location"] == APP_URL

    (set_cookie,) = token_cookie_headers(done)
    assert set_cookie.startswith("__Secure-gateway_token=")  # __Host- would forbid the Domain
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in set_cookie.split(";")[1:]}
    assert attributes["domain"] == "Domain=example.com"
    assert {"secure", "httponly", "path", "samesite"} <= attributes.keys()
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]

    # The browser now sends the cookie to app.example.com; nginx passes it to the gateway's check.
    with TestClient(sibling_client.app, base_url=GATEWAY_URL) as nginx:
        answer = nginx.get("/auth/check?allowed_groups=staff", headers={"Cookie": f"__Secure-gateway_token={value}"})
        assert answer.status_code == 202
        assert answer.headers["x-auth-request-user"] == "Alice"

        # Logout clears the cookie on the same domain, and the check says 401 from then on.
        out = sibling_client.post("/logout", data={"csrf": csrf_of(sibling_client.get("/chat").text)})
        cleared = token_cookie_headers(out)  # the cookie and every chunk it may have had
        assert cleared[0].startswith('__Secure-gateway_token=""')
        assert all("Domain=example.com" in header and "Max-Age=0" in header for header in cleared)
        assert nginx.get("/auth/check", headers={"Cookie": f"__Secure-gateway_token={value}"}).status_code == 401


@pytest.mark.parametrize("target", ["https://evil.test/x", "https://example.com.evil.test/", "//app.example.com/",
                                    "https://app.example.com:8443/"])
def test_hosts_outside_the_allowed_domains_end_at_chat(sibling_client: TestClient, sign_in: SignIn,
                                                        target: str) -> None:
    done = sign_in(sibling_client, next=target)
    assert done.status_code == 303
    assert done.headers["location"] == "/chat"


def _allowed_file() -> tuple[list[str], list[str]]:
    """redirects-allowed.txt: the allow-list its header quotes, and the absolute URLs it says pass."""
    lines = (TESTDATA / "redirects-allowed.txt").read_text(encoding="utf-8").split("\n")
    (listed,) = [line for line in lines if line.startswith("#   foo.bar, ")]
    domains = [entry.strip() for entry in listed.removeprefix("#").split(",")]
    urls = [line for line in lines if line and not line.startswith(("#", "/"))]
    return domains, urls


ALLOWED_DOMAINS, ALLOWED_URLS = _allowed_file()


@pytest.fixture
def guarded_client(idp: FakeIdP, make_settings: SettingsFactory) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(allowed_redirect_domains=ALLOWED_DOMAINS)),
                    follow_redirects=False) as test_client:
        yield test_client


def test_the_allowed_file_is_what_it_says() -> None:
    assert len(ALLOWED_DOMAINS) == 11
    assert len(ALLOWED_URLS) == 23  # and "/redirect"


@pytest.mark.parametrize("target", ALLOWED_URLS)
def test_every_allowed_sibling_url_ends_the_whole_flow(guarded_client: TestClient, idp: FakeIdP,
                                                       target: str) -> None:
    page = guarded_client.get("/login", params={"next": target})
    (href,) = re.findall(r'href="(/login/idp\?next=[^"]*)"', page.text)
    assert href == f"/login/idp?next={quote(target, safe='')}"
    start = guarded_client.get(href)
    done = guarded_client.get(idp.authorize(start.headers["location"]))
    assert done.status_code == 303
    assert done.headers["location"] == target
