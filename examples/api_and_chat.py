"""An API of your own with protected routes, and the gateway's chat beside it: its pages under /chat, its
socket at /ws/{room}. The same GATEWAY_* settings as `gateway serve` (docs/library.md).

    python examples/api_and_chat.py      # PORT=8000 by default; GATEWAY_PUBLIC_URL must match
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field

from gateway import CurrentUser, Gateway, OptionalUser, Principal, require

gateway = Gateway.from_env(home="/")
app = gateway.install(FastAPI(title="notes"))
app.include_router(gateway.auth_router)  # /login, /auth/{name}/callback, /logout, /auth/refresh, /auth/session
app.include_router(gateway.chat_router)  # GET /chat, /chat/{room}; WS /ws/{room}
app.include_router(gateway.ops_router)  # /healthz, /readyz, /metrics

Staff = Annotated[Principal, Depends(require(groups=["staff"]))]
NOTES: dict[str, list[str]] = {}


class Note(BaseModel):
    text: str = Field(min_length=1, max_length=1000)


@app.get("/")
async def home(request: Request, user: OptionalUser) -> dict[str, object]:
    if user is None:
        return {"signed_in": False, "sign_in": "/login?next=/"}
    return {"signed_in": True, "name": user.name, "chat": "/chat", "logout_csrf": gateway.logout_token(request)}


@app.get("/api/notes")
async def list_notes(user: CurrentUser) -> list[str]:
    return NOTES.get(user.user_id, [])


@app.post("/api/notes", status_code=201)
async def add_note(note: Note, user: CurrentUser) -> list[str]:  # with the cookie: only from our Origin
    NOTES.setdefault(user.user_id, []).append(note.text)
    return NOTES[user.user_id]


@app.get("/api/stats")
async def stats(user: Staff) -> dict[str, int]:  # 403 unless the provider lists the user in "staff"
    return {"users": len(NOTES), "notes": sum(len(notes) for notes in NOTES.values())}


if __name__ == "__main__":
    gateway.serve(app, port=int(os.environ.get("PORT", "8000")))
