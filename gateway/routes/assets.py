"""Files browsers ask for by fixed path, outside /static."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gateway.app import PACKAGE

router = APIRouter()


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    # Pages link /static/favicon.svg; this answers browsers that ask anyway (a JSON answer opened in a tab).
    return FileResponse(PACKAGE / "static" / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})
