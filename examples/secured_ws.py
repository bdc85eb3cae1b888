"""FastAPI's /secured-ws echo recipe, done right: one dependency for HTTP and WebSocket routes that takes the
token from `Authorization: Bearer`, the k8s-style subprotocol entry or the sealed sign-in cookie, checks it
at the provider (cached) and refuses with a real 401/403/503 before the handshake completes; the socket is
closed with 4401 when the token expires or is revoked, or the user signs out.

    GATEWAY_PUBLIC_URL=http://127.0.0.1:8000 GATEWAY_SECRET_KEYS=... \\
    GATEWAY_PROVIDERS__MYIDP__ISSUER=https://idp.example.com GATEWAY_PROVIDERS__MYIDP__CLIENT_ID=... \\
    python examples/secured_ws.py             # or put the settings in .env (docs/library.md)

Sign in at /login, then open /me; programs connect to ws://127.0.0.1:8000/secured-ws with a bearer token.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, WebSocket

from gateway import CurrentUser, Gateway

gateway = Gateway.from_env(home="/me")
app = gateway.install(FastAPI())
app.include_router(gateway.auth_router)  # /login, /auth/{name}/callback, /logout, /auth/session, ...


@app.get("/me")
async def me(user: CurrentUser) -> dict[str, str | None]:
    return {"id": user.user_id, "name": user.name, "email": user.email}


@app.websocket("/secured-ws")
async def secured_ws(websocket: WebSocket, user: CurrentUser) -> None:
    async with gateway.live_session(websocket, user):  # accepts, and closes 4401/4403 when it must
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"{user.name}: {text}")


if __name__ == "__main__":
    gateway.serve(app, port=int(os.environ.get("PORT", "8000")))
