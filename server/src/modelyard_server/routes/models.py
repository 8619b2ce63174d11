"""Running models: launch, list, describe, progress, terminate (/v1/models)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from modelyard.errors import InvalidRequest
from modelyard_server.local_backend import log_tail
from modelyard_server.protocol import LaunchModelRequest
from modelyard_server.state import server_state

router = APIRouter(prefix="/v1/models")


@router.post("")
async def launch(body: LaunchModelRequest, request: Request, wait_ready: bool = True) -> dict:
    problems = body.unsupported()
    if problems:
        raise InvalidRequest("Unsupported launch parameters: " + "; ".join(problems) + ".")
    record = await server_state(request).supervisor.launch(body, wait_ready=wait_ready)
    return {"model_uid": record.uid}


@router.get("")
async def list_models(request: Request) -> dict:
    data = []
    for record in server_state(request).supervisor.models.values():
        data.append(record.describe())
    return {"object": "list", "data": data}


@router.get("/{model_uid}")
async def describe(model_uid: str, request: Request) -> dict:
    return server_state(request).supervisor.get(model_uid).describe()


@router.get("/{model_uid}/progress")
async def progress(model_uid: str, request: Request) -> dict:
    record = server_state(request).supervisor.get(model_uid)
    latest = record.progress
    return {"progress": latest["progress"], "stage": latest["stage"], "message": latest["message"],
            "status": record.status.value, "error": record.error, "history": record.history}


@router.get("/{model_uid}/logs")
async def logs(model_uid: str, request: Request, lines: int = Query(100, ge=1, le=10_000)) -> dict:
    """The tail of the model's worker output (stdout and stderr)."""
    record = server_state(request).supervisor.get(model_uid)
    path = server_state(request).supervisor.backend.log_path(model_uid)
    return {"model_uid": record.uid, "path": str(path), "lines": log_tail(path, lines, max_bytes=lines * 1024)}


@router.delete("/{model_uid}")
async def terminate(model_uid: str, request: Request) -> dict:
    await server_state(request).supervisor.terminate(model_uid)
    return {"model_uid": model_uid, "terminated": True}


@router.post("/{model_uid}/cancel")
async def cancel_launch(model_uid: str, request: Request) -> dict:
    """Xinference's "cancel a launch": ends the model, launching or not."""
    return await terminate(model_uid, request)
