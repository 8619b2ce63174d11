"""Per-model virtualenvs: list, remove, prune (/v1/virtualenvs)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from modelyard_server.auth import scoped
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/virtualenvs", route_class=scoped("admin"))


@router.get("")
async def list_virtualenvs(request: Request) -> dict:
    return {"list": await asyncio.to_thread(server_state(request).supervisor.venvs.list)}


@router.delete("/{key}")
async def remove(key: str, request: Request) -> dict:
    await asyncio.to_thread(server_state(request).supervisor.venvs.remove, key)
    return {"key": key, "removed": True}


@router.post("/prune")
async def prune(request: Request) -> dict:
    return {"removed": await asyncio.to_thread(server_state(request).supervisor.venvs.prune)}
