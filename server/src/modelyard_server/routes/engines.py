"""Which engines can serve a model: GET /v1/engines/{model_name} and /v1/engines/{model_type}/{model_name}."""

from __future__ import annotations

from fastapi import APIRouter, Request

from modelyard import engines
from modelyard.errors import NotFound
from modelyard_server.auth import scoped
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/engines", route_class=scoped("models:read"))


@router.get("/{model_type}/{model_name}")
async def engines_for_type(model_type: str, model_name: str, request: Request) -> dict:
    state = server_state(request)
    entry = state.registry.get(model_type, model_name)
    return engines.report(state.plugins, entry.model_type, entry.registration)


@router.get("/{model_name}")
async def engines_for_name(model_name: str, request: Request) -> dict:
    state = server_state(request)
    for model_type in state.plugins.model_types.values():
        if not model_type.uses_engine:
            continue
        try:
            entry = state.registry.get(model_type.name, model_name)
        except NotFound:
            continue
        return engines.report(state.plugins, entry.model_type, entry.registration)
    raise NotFound(f"No model named {model_name!r} is registered or builtin.")
