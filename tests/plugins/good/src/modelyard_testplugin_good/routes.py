"""An API family added through register_routes; imported by the server only, never by a worker.
Each route answers through the server's seam (modelyard_server.streaming.model_response)."""

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel

from modelyard_server.auth import scopes
from modelyard_server.streaming import model_response

router = APIRouter(prefix="/v1/echo")


class Say(BaseModel):
    model: str
    text: str


@router.post("/whole")
async def whole(body: Say, request: Request):
    return await model_response(request, body.model, "infer", [body.text], {}, model_type="flexible")


@router.post("/events")
async def events(body: Say, request: Request):
    return await model_response(request, body.model, "infer", [body.text], {"words": True},
                                model_type="flexible", form="events")


@router.post("/bytes")
async def raw(body: Say, request: Request):
    return await model_response(request, body.model, "infer", [body.text], {"as_bytes": True},
                                model_type="flexible", form="bytes", media_type="audio/wav")


@router.post("/upload")
async def upload(request: Request, model: str = Form(...), file: UploadFile = File(...)):
    data = await file.read()
    return await model_response(request, model, "infer", [f"{file.filename}:{len(data)}"], {},
                                model_type="flexible")


@router.post("/transcribe")
async def wrong_ability(body: Say, request: Request):
    return await model_response(request, body.model, "transcribe", [body.text], {}, model_type="flexible")


@router.get("/models-read", openapi_extra=scopes("models:read"))
async def declared_own_scope():
    return {"scope": "models:read"}


admin_router = APIRouter()


@admin_router.get("/v1/echo/admin")
async def admin_only():
    return {"scope": "admin"}
