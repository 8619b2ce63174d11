"""Server health, the auth probe Xinference's client makes first, and the plugin listing."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Request

from modelyard_server import __version__
from modelyard_server.state import server_state

router = APIRouter()


@router.get("/status")
async def status(request: Request) -> dict:
    state = server_state(request)
    return {"status": "ok", "version": __version__, "pid": os.getpid(),
            "uptime_seconds": round(time.time() - state.started_at, 3),
            "models": len(state.supervisor.models)}


@router.get("/v1/cluster/auth")
async def cluster_auth() -> dict:
    return {"auth": False}


@router.get("/v1/plugins")
async def plugins(request: Request) -> dict:
    return {"plugins": server_state(request).plugins.describe()}
