"""Interop fixtures: panva's oidc-provider (a certified OpenID provider) run with the machine's Node.js, a live
gateway configured for it, and helpers that sign in the way a browser and a bot's owner would.

Skips when `node` or the npm install is missing; GATEWAY_REQUIRE_INTEROP=1 turns those skips into failures.
Nothing here is mocked: every request goes to real servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any, Literal, NoReturn
from urllib.parse import quote_plus, urljoin, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from gateway.app import create_app
from gateway.sealing import Sealer
from tests.conftest import SECRET, SettingsFactory
from tests.live import free_port, live_server

HERE = Path(__file__).parent
PROVIDER_NAME = "panva"  # the gateway's name for the provider: /login/panva, /auth/panva/callback
CLIENT_ID = "gateway"
CLIENT_SECRET = "gateway-secret"
RESOURCE = "urn:gateway"  # tokens requested for this resource are JWTs (RFC 9068) with this audience
OPAQUE_RESOURCE = "urn:gateway:opaque"  # opaque tokens, also with audience RESOURCE (introspectable, revocable)
RESOURCE_SCOPE = "chat"  # the only scope tokens for those resources carry
USER_SCOPE = "openid profile email"
# Registered at the provider besides the gateway's callback, for flows run without a gateway: nothing
# listens there, the helpers read the code off the provider's redirect.
DIRECT_REDIRECT_URI = "http://127.0.0.1/interop-callback"
START_TIMEOUT = 20.0
NPM_TIMEOUT = 300.0
MIN_NODE_MAJOR = 18  # oidc-provider 8.x supports Node LTS from v18 ("Hydrogen") on

ClientAuth = Literal["client_secret_basic", "client_secret_post"]


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("GATEWAY_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{reason} (GATEWAY_REQUIRE_INTEROP=1)")
    pytest.skip(reason)


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("interop tests need Node.js: no `node` on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < MIN_NODE_MAJOR:
        unavailable(f"interop tests need Node.js >= {MIN_NODE_MAJOR}, found {version or 'an unknown version'}")
    return node


def _install_provider() -> None:
    """`npm ci` from the committed package-lock.json, once; node_modules/ is git-ignored."""
    if (HERE / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        unavailable(f"interop tests need npm to install oidc-provider into {HERE / 'node_modules'}")
    try:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired:
        unavailable(f"`npm ci` in {HERE} took over {NPM_TIMEOUT:.0f}s (is the npm registry reachable?)")
    if done.returncode != 0:
        unavailable(f"`npm ci` in {HERE} failed ({done.returncode}):\n{tail(done.stderr or done.stdout)}")


def _read_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_ready(process: subprocess.Popen[str], lines: queue.Queue[str], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        if line.startswith("ready "):
            return line.removeprefix("ready ").strip()
    state = f"exited with {process.returncode}" if process.poll() is not None else "printed no `ready` line in time"
    pytest.fail(f"provider.mjs {state}:\n{tail(log.read_text('utf-8', 'replace'))}")


@pytest.fixture(scope="module")
def gateway_port() -> int:
    """Chosen before the provider starts: the gateway's callback URL is registered with the client."""
    return free_port()


PROVIDER_LOGS = pytest.StashKey[list[tuple[str, Path]]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failed test's report carries the providers' stderr (their server_error stacks among them).
    report = yield
    module = item.getparent(pytest.Module)
    logs = module.stash.get(PROVIDER_LOGS, []) if module is not None else []
    if report.failed:
        for label, log in logs:
            if log.exists():
                report.sections.append((f"oidc-provider log ({label})", log.read_text("utf-8", "replace")))
    return report


@contextmanager
def _run_provider(node: str, env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """provider.mjs on a free loopback port, its stderr into `log_path`; yields its issuer."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen([node, "provider.mjs", str(port)], cwd=HERE, env={**os.environ, **env},
                                   text=True, stdout=subprocess.PIPE, stderr=log)
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), name="provider-stdout",
                                  daemon=True)
        reader.start()
        try:
            yield _wait_ready(process, lines, log_path)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(5)
            process.stdout.close()


class ProviderPool:
    """A test module's providers: one provider.mjs process per distinct set of PROVIDER_* variables (see
    provider.mjs), started on first use and stopped with the module. All register the same gateway."""

    def __init__(self, node: str, gateway_port: int, tmp_path_factory: pytest.TempPathFactory,
                 logs: list[tuple[str, Path]], stack: ExitStack) -> None:
        self._node = node
        self._base_env = {
            "PROVIDER_REDIRECT_URIS": f"http://127.0.0.1:{gateway_port}/auth/{PROVIDER_NAME}/callback,"
                                      f"{DIRECT_REDIRECT_URI}",
            "PROVIDER_POST_LOGOUT_REDIRECT_URIS": f"http://127.0.0.1:{gateway_port}/login",
            "PROVIDER_BACKCHANNEL_LOGOUT_URI": f"http://127.0.0.1:{gateway_port}/auth/{PROVIDER_NAME}/backchannel-logout",
        }
        self._tmp = tmp_path_factory
        self._logs = logs
        self._stack = stack
        self._issuers: dict[tuple[tuple[str, str], ...], str] = {}

    def issuer(self, **env: str) -> str:
        """The issuer of the provider run with these PROVIDER_* variables (none: the defaults)."""
        key = tuple(sorted(env.items()))
        if key not in self._issuers:
            log_path = self._tmp.mktemp("oidc-provider") / "stderr.log"
            self._logs.append((" ".join(f"{name}={value}" for name, value in key) or "defaults", log_path))
            self._issuers[key] = self._stack.enter_context(
                _run_provider(self._node, {**self._base_env, **env}, log_path))
        return self._issuers[key]


@pytest.fixture(scope="module")
def provider_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  gateway_port: int) -> Iterator[ProviderPool]:
    """`provider_pool.issuer(PROVIDER_ACCESS_TOKEN_TTL="5")`: a provider run with other settings, for this
    module. Skips (see `unavailable`) without Node.js or the npm install."""
    node = _node()
    _install_provider()
    logs: list[tuple[str, Path]] = []
    request.node.stash[PROVIDER_LOGS] = logs
    with ExitStack() as stack:
        yield ProviderPool(node, gateway_port, tmp_path_factory, logs, stack)


@pytest.fixture(scope="module")
def issuer(provider_pool: ProviderPool) -> str:
    """The provider with its default settings; its stderr is shown when a test fails."""
    return provider_pool.issuer()


# -- the gateway, configured for this provider --------------------------------------------------------------

GatewayFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def start_gateway(issuer: str, gateway_port: int, make_settings: SettingsFactory) -> GatewayFactory:
    """`with start_gateway(provider={...}, **settings) as base:` a live gateway whose one provider is this one.

    `provider` adds to the provider's settings (e.g. {"validation": "introspection", "audience": RESOURCE}),
    or overrides them: {"issuer": provider_pool.issuer(...), "client_secret": ...} for another of the
    module's providers (its redirect URIs name the same gateway port). Other keywords are gateway settings
    (e.g. validation_cache_ttl=0.5). Yields the gateway's base URL.
    """

    @contextmanager
    def start(provider: Mapping[str, Any] | None = None, **settings_overrides: Any) -> Iterator[str]:
        conf = {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **(provider or {})}
        settings = make_settings(public_url=f"http://127.0.0.1:{gateway_port}", providers={PROVIDER_NAME: conf},
                                 **settings_overrides)
        with live_server(create_app(settings), gateway_port) as address:
            yield f"http://{address}"

    return start


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Iterator[str]:
    """The gateway with its default settings (userinfo validation); yields its base URL."""
    with start_gateway() as base:
        yield base


# -- the provider's devInteractions pages, driven like a browser ---------------------------------------------

@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)  # every named input, hidden ones with their value


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get").lower()))
        elif tag in ("input", "button") and self.forms and values.get("name"):
            self.forms[-1].fields[values["name"]] = values.get("value", "")


def interaction_form(page: httpx.Response) -> Form:
    """The provider's login or consent form: the one that posts a `prompt`."""
    parser = FormParser()
    parser.feed(page.text)
    for form in parser.forms:
        if "prompt" in form.fields:
            return form
    raise AssertionError(f"no login or consent form on {page.url}:\n{page.text[:2000]}")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def authorize(browser: httpx.Client, authorize_url: str, user: str) -> httpx.URL:
    """Play the user at the provider: open the authorization URL, post the login form with `user` (any
    password works), confirm consent. Returns the URL the provider finally redirects to (the client's
    callback, with `code` and `state`, or an `error`), without opening it."""
    provider = origin(authorize_url)
    response = browser.get(authorize_url)
    for _ in range(12):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if origin(target) != provider:
                return httpx.URL(target)
            response = browser.get(target)
            continue
        assert response.status_code == 200, f"{response.url} answered {response.status_code}: {response.text[:500]}"
        form = interaction_form(response)
        data = dict(form.fields)
        if "login" in data:
            data.update(login=user, password="any password")
        assert form.method == "post", form
        response = browser.post(urljoin(str(response.url), form.action), data=data)
    raise AssertionError("the provider kept redirecting without reaching the client's redirect URI")


def sign_in_through_gateway(base: str, user: str, next_path: str = "/chat") -> str:
    """The whole browser flow: gateway /login/panva → provider login and consent → gateway callback.
    Provider and gateway share one cookie jar, as in a browser (cookies ignore ports). Returns the
    gateway's `gateway_token` cookie value."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        start = browser.get(f"{base}/login/{PROVIDER_NAME}", params={"next": next_path})
        assert start.status_code == 302, start.text
        callback = authorize(browser, start.headers["location"], user)
        assert origin(str(callback)) == base and "code" in callback.params, callback
        done = browser.get(str(callback))
        assert done.status_code == 303, f"callback answered {done.status_code}: {done.text[:500]}"
        assert done.headers["location"] == next_path
        cookie: str = browser.cookies["gateway_token"]
        return cookie


# -- the chat socket ------------------------------------------------------------------------------------------

def ws_url(base: str, room: str = "lobby") -> str:
    return base.replace("http://", "ws://", 1) + f"/ws/{room}"


async def welcome(ws: ClientConnection) -> dict[str, Any]:
    """The first frame after accept, which must be `welcome`."""
    first: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first["type"] == "welcome", first
    return first


async def bearer_welcome(base: str, token: str) -> dict[str, Any]:
    """Open the socket as a program does (Authorization header, no Origin); the welcome frame."""
    async with connect(ws_url(base), additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
        return await welcome(ws)


@asynccontextmanager
async def cookie_socket(base: str, cookie: str, room: str = "lobby") -> AsyncIterator[ClientConnection]:
    """Open the socket as the chat page does: the token cookie and the gateway's own Origin."""
    async with connect(ws_url(base, room), additional_headers={"Cookie": f"gateway_token={cookie}"},
                       origin=Origin(base), open_timeout=5) as ws:
        yield ws


async def pong(ws: ClientConnection) -> None:
    """Ping over the chat protocol and wait for the pong (other frames are skipped): the socket still works."""
    await ws.send(json.dumps({"type": "ping"}))
    async with asyncio.timeout(5):
        while json.loads(await ws.recv())["type"] != "pong":
            pass


async def frames_until_closed(ws: ClientConnection, within: float) -> list[dict[str, Any]]:
    """Every frame until the server closes the socket (then see ws.close_code); fails after `within` s."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(within):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        return frames
    except TimeoutError:
        pytest.fail(f"the socket was still open after {within}s; frames: {frames}")


def session_access_token(cookie: str) -> str:
    """The provider's access token sealed in a `gateway_token` cookie. The tests know the gateway's key
    (tests.conftest.SECRET), so they can check, present or revoke the very token a sign-in produced."""
    # A jar keeps the value as set, quoted when it ends in padding; the gateway reads it unquoted.
    payload = Sealer([SECRET], "token cookie").open(cookie.strip('"'), max_age=24 * 3600)
    assert payload is not None, "the cookie does not open with the test key"
    token: str = payload["t"]
    return token


async def refused(url: str, **kwargs: Any) -> httpx.Response:
    """A handshake the gateway must refuse; its HTTP answer."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=5, **kwargs):
            pass
    response = info.value.response
    return httpx.Response(response.status_code, headers=list(response.headers.raw_items()))


async def bearer_refused(base: str, token: str) -> httpx.Response:
    return await refused(ws_url(base), additional_headers={"Authorization": f"Bearer {token}"})


# -- tokens straight from the provider, as a bot's owner or a resource server gets them ----------------------

def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


class ProviderClient:
    """Speaks to the provider as the `gateway` client: code flow with PKCE, client credentials, revocation,
    introspection, JWKS. Endpoints come from discovery."""

    def __init__(self, issuer: str, client_secret: str = CLIENT_SECRET) -> None:
        self.issuer = issuer
        self.client_secret = client_secret
        self.metadata: dict[str, Any] = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()

    def _post(self, endpoint: str, data: dict[str, str], auth: ClientAuth) -> httpx.Response:
        url = self.metadata[endpoint]
        if auth == "client_secret_post":
            return httpx.post(url, data={**data, "client_id": CLIENT_ID, "client_secret": self.client_secret},
                              timeout=10)
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before they go into Basic (httpx does not).
        basic = (quote_plus(CLIENT_ID, safe=""), quote_plus(self.client_secret, safe=""))
        return httpx.post(url, data=data, auth=basic, timeout=10)

    def user_tokens(self, user: str, *, resource: str | None = None, scope: str = USER_SCOPE,
                    auth: ClientAuth = "client_secret_basic") -> dict[str, Any]:
        """A code flow with PKCE for `user` in a fresh browser; the token response. Without `resource` the
        access token is opaque, has no audience and is good at userinfo; with RESOURCE it is a JWT, with
        OPAQUE_RESOURCE an opaque token, both for audience RESOURCE and refused by userinfo (add
        RESOURCE_SCOPE to `scope` to have it granted)."""
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": DIRECT_REDIRECT_URI,
                  "scope": scope, "state": state, "nonce": nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        if resource is not None:
            params["resource"] = resource
        authorize_url = str(httpx.URL(self.metadata["authorization_endpoint"], params=params))
        with httpx.Client(follow_redirects=False, timeout=10) as browser:
            callback = authorize(browser, authorize_url, user)
        assert callback.params.get("state") == state and "code" in callback.params, callback
        data = {"grant_type": "authorization_code", "code": callback.params["code"],
                "redirect_uri": DIRECT_REDIRECT_URI, "code_verifier": verifier}
        if resource is not None:
            data["resource"] = resource
        response = self._post("token_endpoint", data, auth)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def client_credentials(self, *, resource: str | None = None, scope: str | None = None,
                           auth: ClientAuth = "client_secret_basic") -> dict[str, Any]:
        """A bot's token, no user in it: opaque, or for a resource as in user_tokens."""
        data = {"grant_type": "client_credentials"}
        if resource is not None:
            data["resource"] = resource
        if scope is not None:
            data["scope"] = scope
        response = self._post("token_endpoint", data, auth)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def refresh(self, refresh_token: str, auth: ClientAuth = "client_secret_basic") -> httpx.Response:
        return self._post("token_endpoint", {"grant_type": "refresh_token", "refresh_token": refresh_token}, auth)

    def revoke(self, token: str, hint: str = "access_token") -> None:
        """RFC 7009. Use opaque tokens: oidc-provider answers 200 for a JWT access token, which stays valid."""
        response = self._post("revocation_endpoint", {"token": token, "token_type_hint": hint},
                              "client_secret_basic")
        assert response.status_code == 200, response.text

    def introspect(self, token: str, hint: str | None = None) -> dict[str, Any]:
        """RFC 7662, authenticated as the gateway (what an introspection validator will do)."""
        data = {"token": token, **({"token_type_hint": hint} if hint else {})}
        response = self._post("introspection_endpoint", data, "client_secret_basic")
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def jwks(self) -> KeySet:
        return KeySet.import_key_set(httpx.get(self.metadata["jwks_uri"], timeout=10).json())

    def decode_jwt(self, token: str) -> jwt.Token:
        """A JWT access token, its signature checked against the provider's JWKS (claims are not validated)."""
        return jwt.decode(token, self.jwks())


@pytest.fixture(scope="module")
def provider(issuer: str) -> ProviderClient:
    return ProviderClient(issuer)
