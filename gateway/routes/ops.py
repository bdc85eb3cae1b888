"""Operator endpoints."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

router = APIRouter()


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """Liveness: the process answers. No dependency is consulted."""
    return JSONResponse({"status": "ok"})
