"""The cache of unsealed token cookies: a cookie is decrypted once, and the cache changes no answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.cookies import TokenCookie, TokenSession
from gateway.sealing import Sealer
from gateway.unsealed import Unsealed
from tests.conftest import SECRET
from tests.test_cookies import T0, Clock


class CountingSealer(Sealer):
    opened = 0

    def open(self, sealed: str, max_age: int) -> dict[str, object] | None:  # type: ignore[override]
        self.opened += 1
        return super().open(sealed, max_age)


def request_with(cookie: TokenCookie, session: TokenSession) -> Request:
    response = Response()
    cookie.set(response, session)
    pairs = [value.decode().split(";", 1)[0] for key, value in response.raw_headers if key == b"set-cookie"]
    return Request({"type": "http", "headers": [(b"cookie", "; ".join(pairs).encode())]})


def make(clock: Clock, max_age: int = 3600) -> tuple[TokenCookie, CountingSealer]:
    sealer = CountingSealer([SECRET], "token cookie", clock=clock)
    return TokenCookie(sealer, https=True, max_age=max_age, clock=clock), sealer


def test_a_cookie_is_decrypted_once_and_read_many_times() -> None:
    clock = Clock()
    cookie, sealer = make(clock)
    session = TokenSession("idp", "token-a", T0 + 600, T0, "sid-a")
    request = request_with(cookie, session)
    assert [cookie.read(request) for _ in range(5)] == [session] * 5
    assert sealer.opened == 1 and cookie.unsealed.hits == 4
    other = request_with(cookie, TokenSession("idp", "token-b", T0 + 600, T0, "sid-b"))
    assert cookie.read(other) is not None and sealer.opened == 2  # another cookie: its own entry


def test_a_kept_cookie_still_expires_with_the_session_limit() -> None:
    clock = Clock()
    cookie, _ = make(clock, max_age=100)
    request = request_with(cookie, TokenSession("idp", "token-a", None, T0, "sid-a"))
    assert cookie.read(request) is not None
    clock.now = T0 + 99
    assert cookie.read(request) is not None
    clock.now = T0 + 101  # past GATEWAY_SESSION_MAX_AGE: refused as an uncached read would refuse it
    assert cookie.read(request) is None
    assert len(cookie.unsealed) == 0


def test_a_tampered_cookie_never_matches_a_kept_one() -> None:
    clock = Clock()
    cookie, _ = make(clock)
    request = request_with(cookie, TokenSession("idp", "token-a", None, T0, "sid-a"))
    assert cookie.read(request) is not None
    raw = cookie.raw(request)
    assert raw is not None
    flipped = raw[:-5] + ("A" if raw[-5] != "A" else "B") + raw[-4:]
    tampered = Request({"type": "http", "headers": [(b"cookie", f"{cookie.name}={flipped}".encode())]})
    assert cookie.read(tampered) is None


def test_logout_forgets_the_cookie() -> None:
    clock = Clock()
    cookie, sealer = make(clock)
    request = request_with(cookie, TokenSession("idp", "token-a", None, T0, "sid-a"))
    cookie.read(request)
    cookie.forget(request)
    assert len(cookie.unsealed) == 0
    cookie.read(request)
    assert sealer.opened == 2


def test_the_cache_is_bounded_in_entries_and_in_bytes() -> None:
    by_count: Unsealed[str] = Unsealed(max_entries=3, max_bytes=1 << 20)
    for i in range(10):
        by_count.put(f"sealed-{i}", T0, f"value-{i}")
    assert len(by_count) == 3
    assert by_count.get("sealed-9") == (T0, "value-9") and by_count.get("sealed-0") is None
    by_bytes: Unsealed[str] = Unsealed(max_entries=1000, max_bytes=10_000)
    for i in range(100):
        by_bytes.put(f"{i:04d}" + "x" * 1000, T0, "v")
    assert 1 <= len(by_bytes) <= 9  # about 1.2 kB an entry
    assert by_bytes.get("0099" + "x" * 1000) is not None  # the newest kept, the oldest gone
    assert by_bytes.get("0000" + "x" * 1000) is None
    by_bytes.put("y" * 20_000, T0, "too big")  # bigger than the whole cache: not kept, nothing evicted
    assert by_bytes.get("y" * 20_000) is None and by_bytes.get("0099" + "x" * 1000) is not None


def test_the_default_bounds_hold_a_storm_of_twenty_thousand_browsers() -> None:
    """Ten thousand reconnecting clients cycle through the cache in order: one entry too few and each of
    them misses (an LRU evicts the very cookie that comes next)."""
    cache: Unsealed[int] = Unsealed()
    cookies = [f"{i:05d}" + "x" * 1600 for i in range(20_000)]
    for i, sealed in enumerate(cookies):
        cache.put(sealed, T0, i)
    assert sum(cache.get(sealed) == (T0, i) for i, sealed in enumerate(cookies)) == 20_000


def test_sealed_at_reads_the_time_fernet_sealed_with() -> None:
    clock = Clock(T0 + 12.7)
    sealer = Sealer([SECRET], "token cookie", clock=clock)
    for compress in (False, True):
        sealed = sealer.seal({"t": "x" * 3000}, compress=compress)
        assert sealer.open(sealed, 3600) is not None
        assert Sealer.sealed_at(sealed) == int(T0 + 12.7)
