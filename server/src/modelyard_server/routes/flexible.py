"""Flexible models: POST /v1/flexible/infers calls `model.infer(*args, **kwargs)`.

The hot path: the body is parsed once here, the worker returns the result already encoded as
JSON, and the server passes those bytes through untouched. With `?stream=true`, an `infer` that
yields answers as server-sent events, one per item.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard_server.auth import scoped
from modelyard_server.protocol import FLEXIBLE_INFER_BODY, JSON_OR_EVENTS
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/flexible/infers", responses=JSON_OR_EVENTS, openapi_extra={
    "parameters": [{"name": "stream", "in": "query", "required": False,
                    "schema": {"type": "boolean", "default": False}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": FLEXIBLE_INFER_BODY}}}})
async def infer(request: Request) -> Response:
    # `stream` is read by hand: a declared query parameter costs a validation pass on every call.
    stream = config.truthy(request.query_params.get("stream"))
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest('The request body must be a JSON object: {"model": uid, "args": [...], ...kwargs}.')
    uid = body.pop("model", None)
    if not isinstance(uid, str) or not uid:
        raise InvalidRequest('"model" is required: the uid of a running flexible model.')
    args = body.pop("args", None) or []
    if not isinstance(args, list):
        raise InvalidRequest('"args" must be a JSON array of positional arguments.')
    return await model_response(request, uid, "infer", args, body, model_type="flexible",
                                form="events" if stream else "json")
