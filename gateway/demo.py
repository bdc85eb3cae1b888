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

import flask
import jinja2
import oidc_provider_mock
import werkzeug.serving

from gateway.app import PACKAGE, templates_dir

DEMO_CLIENT_ID = "gateway-demo"
DEMO_HOST = "127.0.0.1"  # the mock's issuer follows the Host header: one name everywhere
# Files of the gateway's /static the provider's pages use: served by the provider itself (its own origin).
PAGE_FILES = frozenset({"gateway.css", "favicon.svg", "logout.js"})


def local_pages(app: flask.Flask) -> None:
    """The provider's pages in the gateway's style, from local files only: its own templates load a CDN
    stylesheet. Ours (templates/demo-provider/) come first in its template search; the mock's stay behind
    them for any page we do not override."""
    app.jinja_loader = jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(str(templates_dir() / "demo-provider")),
        *([app.jinja_loader] if app.jinja_loader is not None else []),
    ])

    def static_file(name: str) -> flask.Response:
        if name not in PAGE_FILES:
            flask.abort(404)
        return flask.send_from_directory(PACKAGE / "static", name, max_age=3600)

    app.add_url_rule("/gateway-static/<name>", "gateway_static", static_file)


@contextmanager
def demo_provider(port: int = 0, token_lifetime: timedelta = timedelta(hours=1)) -> Iterator[str]:
    """Serve the demo provider; yields its issuer URL."""
    app = oidc_provider_mock.app(access_token_max_age=token_lifetime)
    # It wraps itself in werkzeug's interactive debugger: never offer a code console, even on loopback.
    app.debug = False
    app.wsgi_app = app.wsgi_app.app
    app.secret_key = secrets.token_bytes(32)
    local_pages(app)
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
