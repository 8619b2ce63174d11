"""API keys, for admins: create (the value is shown once), list, revoke (/v1/keys)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from modelyard_server.auth import scoped
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/keys", route_class=scoped("admin"))


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[str]
    models: list[str] = []
    expires_in: str | float | None = None
    name: str | None = None


@router.post("")
async def create(body: CreateKeyRequest, request: Request) -> dict:
    key, value = server_state(request).keys.create(body.scopes, models=body.models, expires_in=body.expires_in,
                                                   name=body.name)
    return {**key.describe(), "key": value}


@router.get("")
async def list_keys(request: Request) -> dict:
    return {"keys": [key.describe() for key in server_state(request).keys.list()]}


@router.delete("/{key_id}")
async def revoke(key_id: str, request: Request) -> dict:
    return server_state(request).keys.revoke(key_id).describe()
