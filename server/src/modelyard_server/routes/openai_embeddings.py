"""POST /v1/embeddings, in OpenAI's shape (float or base64 vectors, real usage).

The hot path of retrieval traffic: the body is validated straight from its bytes by the request
model (FastAPI's own body handling costs several times more per request), and the vectors are
shaped into JSON by hand."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from modelyard.errors import InvalidRequest
from modelyard_server import openai_shapes
from modelyard_server.auth import scoped
from modelyard_server.openai_protocol import EmbeddingRequest
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/embeddings", openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": EmbeddingRequest.model_json_schema()}}}})
async def create_embeddings(request: Request) -> Response:
    try:
        body = EmbeddingRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if body.encoding_format not in ("float", "base64"):
        raise InvalidRequest(f"encoding_format must be float or base64, got {body.encoding_format!r}.")
    uid, encoding = body.model, body.encoding_format
    return await model_response(request, uid, "embed", [body.input], body.engine_params(), model_type="embedding",
                                shape=lambda result: openai_shapes.embeddings(uid, result, encoding))
