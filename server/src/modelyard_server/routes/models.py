"""Running models: launch, list, describe, progress, terminate (/v1/models)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query, Request

from modelyard.errors import InvalidRequest, NotFound
from modelyard_server.auth import request_key, require_model, scoped, scopes
from modelyard_server.local_backend import log_tail
from modelyard_server.protocol import LaunchModelRequest
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/models", route_class=scoped("models:read"))


@router.post("", openapi_extra=scopes("models:launch"))
async def launch(body: LaunchModelRequest, request: Request, wait_ready: bool = True) -> dict:
    problems = body.unsupported()
    if problems:
        raise InvalidRequest("Unsupported launch parameters: " + "; ".join(problems) + ".")
    record = await server_state(request).supervisor.launch(body, wait_ready=wait_ready, key=request_key(request))
    return {"model_uid": record.uid}


@router.get("", openapi_extra=scopes("inference", "models:read"))
async def list_models(request: Request) -> dict:
    key = request_key(request)
    data = [record.describe() for record in server_state(request).supervisor.models.values()
            if key is None or key.may_use(record.uid, record.model_name)]
    return {"object": "list", "data": data}


@router.get("/{model_uid}", openapi_extra=scopes("inference", "models:read"))
async def describe(model_uid: str, request: Request) -> dict:
    """Also for inference keys: clients describe a model to know how to call it."""
    record = server_state(request).supervisor.get(model_uid)
    require_model(request, record.uid, record.model_name)
    return record.describe()


@router.get("/{model_uid}/progress")
async def progress(model_uid: str, request: Request) -> dict:
    record = server_state(request).supervisor.get(model_uid)
    latest = record.progress
    now = time.time()
    running = record.status.value == "LAUNCHING"
    return {"progress": latest["progress"], "stage": latest["stage"], "message": latest["message"],
            "status": record.status.value, "error": record.error, "history": record.history,
            # while it launches: how long it has been at this stage, and launching at all
            "stage_seconds": round(now - latest["at"], 1) if running else None,
            "elapsed_seconds": round(now - record.created_at, 1) if running else None}


@router.get("/{model_uid}/logs")
async def logs(model_uid: str, request: Request, lines: int = Query(100, ge=1, le=10_000),
               replica: int = Query(0, ge=0)) -> dict:
    """The tail of a worker's output (stdout and stderr): the model's first replica's, or `replica`'s."""
    record = server_state(request).supervisor.get(model_uid)
    if replica >= len(record.replicas):
        raise InvalidRequest(f"Model {model_uid!r} has {len(record.replicas)} replica(s), numbered from 0; "
                             f"there is no replica {replica}.")
    path = server_state(request).supervisor.backend.log_path(model_uid, replica)
    tail = await asyncio.to_thread(log_tail, path, lines, lines * 1024)  # up to 10 MiB: not on the event loop
    return {"model_uid": record.uid, "path": str(path), "lines": tail}


@router.get("/{model_uid}/events")
async def events(model_uid: str, request: Request) -> dict:
    """The model's launches, exits, restarts, restores and termination, oldest first (kept after
    it ended, the newest 200)."""
    supervisor = server_state(request).supervisor
    model_name = supervisor.model_name(model_uid)
    require_model(request, model_uid, model_name)
    found = await asyncio.to_thread(supervisor.launches.events, model_uid)
    if not found and model_name is None:
        raise NotFound(f"No model with uid {model_uid!r} is running or has events. GET /v1/models lists the "
                       "running models.")
    return {"model_uid": model_uid, "events": found}


@router.delete("/{model_uid}", openapi_extra=scopes("models:launch"))
async def terminate(model_uid: str, request: Request) -> dict:
    await server_state(request).supervisor.terminate(model_uid, request_key(request))
    return {"model_uid": model_uid, "terminated": True}


@router.post("/{model_uid}/cancel", openapi_extra=scopes("models:launch"))
async def cancel_launch(model_uid: str, request: Request) -> dict:
    """Xinference's "cancel a launch": ends the model, launching or not."""
    return await terminate(model_uid, request)
