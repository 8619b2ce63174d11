"""POST /v1/embeddings, in OpenAI's shape (float or base64 vectors, real usage)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelyard.errors import InvalidRequest
from modelyard_server import openai_shapes
from modelyard_server.auth import scoped
from modelyard_server.openai_protocol import EmbeddingRequest
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, request: Request) -> Response:
    if body.encoding_format not in ("float", "base64"):
        raise InvalidRequest(f"encoding_format must be float or base64, got {body.encoding_format!r}.")
    uid, encoding = body.model, body.encoding_format
    return await model_response(request, uid, "embed", [body.input], body.engine_params(), model_type="embedding",
                                shape=lambda result: openai_shapes.embeddings(uid, result, encoding))
