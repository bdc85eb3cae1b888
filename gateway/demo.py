"""The embedded OpenID provider for `gateway demo`: oidc-provider-mock on a free loopback port, in a thread.

Anyone can sign in as anyone there: it exists so the gateway runs with no account anywhere.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import oidc_provider_mock
import werkzeug.serving

DEMO_CLIENT_ID = "gateway-demo"
DEMO_HOST = "127.0.0.1"  # the mock's issuer follows the Host header: one name everywhere


@contextmanager
def demo_provider(port: int = 0, token_lifetime: timedelta = timedelta(hours=1)) -> Iterator[str]:
    """Serve the demo provider; yields its issuer URL."""
    app = oidc_provider_mock.app(access_token_max_age=token_lifetime)
    # It wraps itself in werkzeug's interactive debugger: never offer a code console, even on loopback.
    app.debug = False
    app.wsgi_app = app.wsgi_app.app
    app.secret_key = secrets.token_bytes(32)
    # Its Flask session cookie is named `session`; ours have their own names, so they never collide.
    server = werkzeug.serving.make_server(DEMO_HOST, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="demo-provider", daemon=True)
    thread.start()
    try:
        yield f"http://{DEMO_HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


def banner(public_url: str, issuer: str, history: Path, uses_redis: bool) -> str:
    """What `gateway demo` prints once it is about to serve."""
    where = "in Redis (GATEWAY_BROKER_URL)" if uses_redis else str(history.resolve())
    return "\n".join([
        "gateway demo",
        f"  open      {public_url}/chat",
        f"  provider  {issuer}: embedded (oidc-provider-mock); anyone can sign in as anyone",
        f"  history   {where}",
        "  restart   signs everyone out: the cookie keys and the provider's tokens are new each run",
    ])
