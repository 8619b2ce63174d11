"""Server health, the auth probe Xinference's client makes first, and the plugin listing."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request

from modelyard_server import __version__
from modelyard_server.auth import PUBLIC, scoped, scopes
from modelyard_server.state import server_state

router = APIRouter(route_class=scoped("admin"))


@router.get("/status", openapi_extra=scopes(PUBLIC))
async def status(request: Request) -> dict:
    state = server_state(request)
    return {"status": "ok", "version": __version__, "pid": os.getpid(),
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "models": len(state.supervisor.models)}


@router.get("/v1/cluster/auth", openapi_extra=scopes(PUBLIC))
async def cluster_auth(request: Request) -> dict:
    """Whether this server wants API keys (xinference-client asks before it sends its key)."""
    keys = server_state(request).keys
    keys.refresh()
    return {"auth": keys.enabled}


@router.get("/v1/plugins")
async def plugins(request: Request) -> dict:
    return {"plugins": server_state(request).plugins.describe()}
