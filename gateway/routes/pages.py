"""Rendering helpers shared by the page routes."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.requests import HTTPConnection

from gateway.app import Gateway


def gateway_of(request: HTTPConnection) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return gateway_of(request).templates.TemplateResponse(
        request, template, context, status_code=status_code
    )


def signed_in(request: Request) -> bool:
    """A token cookie that opens: enough to choose a page's link (back to the chat), never to let anyone in."""
    return gateway_of(request).token_cookie.read(request) is not None


def error_page(request: Request, status_code: int, title: str, message: str,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    response = render(request, "error.html", status_code, title=title, message=message,
                      signed_in=signed_in(request))
    if headers:
        response.headers.update(headers)
    return response
