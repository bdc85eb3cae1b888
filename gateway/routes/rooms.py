"""GET /rooms: the rooms this user may enter, with unread counts (docs/protocol.md, "The room list")."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from gateway.chat.history import StoreUnavailable
from gateway.errors import Forbidden
from gateway.routes.pages import gateway_of
from gateway.security import CurrentUser

router = APIRouter()


@router.get("/rooms")
async def rooms(request: Request, user: CurrentUser) -> JSONResponse:
    gateway = gateway_of(request)
    try:
        found = await gateway.hub.broker.rooms(user.user_id, user.name or "")
    except StoreUnavailable:
        raise HTTPException(503, "the chat store is unavailable; ask again", headers={"Retry-After": "5"}) from None
    allowed = []
    for room in found:
        try:
            gateway.access.check(user, room.name)  # a room its rule forbids is not listed
        except Forbidden:
            continue
        allowed.append(room.public())
    return JSONResponse({"rooms": allowed})
