"""Custom model registrations: /v1/model_registrations/{model_type}[/{model_name}]."""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelyard_server.auth import request_key, scoped, scopes
from modelyard_server.protocol import RegisterModelRequest
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/model_registrations", route_class=scoped("models:read"))


@router.post("/{model_type}", openapi_extra=scopes("models:register"))
async def register(model_type: str, body: RegisterModelRequest, request: Request) -> dict:
    entry = server_state(request).registry.register(model_type, body.model, body.persist, key=request_key(request))
    return {"model_name": entry.registration.model_name, "model_type": entry.model_type,
            "persist": entry.persisted}


@router.get("/{model_type}")
async def list_registrations(model_type: str, request: Request, detailed: bool = False) -> list[dict]:
    entries = server_state(request).registry.list(model_type)
    return [{**e.detail(), **e.summary()} if detailed else e.summary() for e in entries]


@router.get("/{model_type}/{model_name}")
async def get_registration(model_type: str, model_name: str, request: Request) -> dict:
    return server_state(request).registry.get(model_type, model_name).detail()


@router.delete("/{model_type}/{model_name}", openapi_extra=scopes("models:register"))
async def unregister(model_type: str, model_name: str, request: Request) -> dict:
    server_state(request).registry.unregister(model_type, model_name)
    return {"model_name": model_name, "unregistered": True}
