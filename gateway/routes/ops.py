"""Operator endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.errors import ProviderUnavailable
from gateway.routes.pages import gateway_of

router = APIRouter()
STORE_CHECK_TIMEOUT = 2.0  # seconds; Prometheus's default scrape timeout is 10


@router.get("/healthz")
async def healthz() -> JSONResponse:
    """Liveness: the process answers. No dependency is consulted."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: every provider's discovery loaded and its credentials accepted, and the store reachable.
    503 names each failing part, so a load balancer (and its operator) knows why."""
    gateway = gateway_of(request)
    failing = []
    for provider in gateway.providers:
        if not provider.ready:
            try:
                await provider.metadata()
            except ProviderUnavailable:
                pass  # reported just below
        if not provider.ready:
            why = ("refuses the gateway's client credentials" if getattr(provider.validator, "misconfigured", False)
                   else "discovery not loaded")
            failing.append(f"provider {provider.name}: {why}")
    try:  # a primary that stopped answering (a failover under way) must not stall the probe
        store_up = await asyncio.wait_for(gateway.hub.broker.healthy(), STORE_CHECK_TIMEOUT)
    except TimeoutError:
        store_up = False
    if not store_up:
        failing.append("store: " + ("Redis unreachable" if gateway.settings.uses_redis else "history unavailable"))
    if failing:
        return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"status": "ok"})


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text to loopback peers (the real client, after trusted-proxy handling) or to
    `Authorization: Bearer <GATEWAY_METRICS_TOKEN>`; everyone else gets 404, as if there were nothing."""
    gateway = gateway_of(request)
    token = gateway.settings.metrics_token
    offered = request.headers.get("authorization", "")
    allowed = _loopback(request.client.host if request.client else None) or (
        token is not None and hmac.compare_digest(offered.encode(), f"Bearer {token.get_secret_value()}".encode()))
    if not allowed:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    try:  # a Redis that stopped answering must not stall the scrape
        gateway.metrics.stats.store_up = await asyncio.wait_for(gateway.hub.broker.healthy(), STORE_CHECK_TIMEOUT)
    except TimeoutError:
        gateway.metrics.stats.store_up = False
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
