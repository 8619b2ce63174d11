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
    return _report(state.plugins, entry)


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
        return _report(state.plugins, entry)
    raise NotFound(f"No model named {model_name!r} is registered or builtin.")


def _report(plugins, entry) -> dict:
    """Only the engines of the entry's type: `vllm` for embeddings is not `vllm` for LLMs."""
    model_type = plugins.model_type(entry.model_type)
    return engines.report(plugins, model_type.name, entry.registration, model_type.specs(entry.registration))
