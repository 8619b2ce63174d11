"""GET /metrics: Prometheus' text format (scope models:read, or public with --metrics-public)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from modelyard_server.auth import PUBLIC, scoped, scopes
from modelyard_server.state import server_state


def router(public: bool) -> APIRouter:
    metrics_router = APIRouter(route_class=scoped("models:read"))

    @metrics_router.get("/metrics", openapi_extra=scopes(PUBLIC) if public else None,
                        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics(request: Request) -> Response:
        return Response(server_state(request).metrics.scrape(), media_type=CONTENT_TYPE_LATEST)

    return metrics_router
