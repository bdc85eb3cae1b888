"""HTML answers for browsers on 404 and 405 (and any other HTTPException of the routing layer).

A browser asking for a page (`Accept: text/html`) gets a page in the product's style with a link that fits
(back to the chat when signed in, else to sign-in); programs keep FastAPI's JSON `{"detail": ...}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from gateway.routes.pages import error_page

PAGES = {
    404: ("Page not found", "There is nothing at this address."),
    405: ("Not a page", "This address is not one to open in a browser."),
}


def wants_html(request: Request) -> bool:
    """A browser navigating: it puts text/html first among what it accepts (fetch() and programs do not)."""
    accept = request.headers.get("accept", "")
    return request.method in ("GET", "HEAD") and accept.split(",", 1)[0].strip().startswith("text/html")


async def page_or_json(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    if exc.status_code not in PAGES or not wants_html(request):
        return await http_exception_handler(request, exc)
    title, message = PAGES[exc.status_code]
    return error_page(request, exc.status_code, title, message, headers=dict(exc.headers or {}))


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, page_or_json)
