"""POST /v1/rerank: documents scored against a query, best first (Xinference's, Cohere's and Jina's shape)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from modelyard_server.auth import scoped
from modelyard_server.rerank_protocol import RerankRequest, reranked
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/rerank")
async def rerank(body: RerankRequest, request: Request) -> Response:
    documents, lengths = bool(body.return_documents), bool(body.return_len)
    return await model_response(
        request, body.model, "rerank", [body.documents, body.query],
        {"top_n": body.top_n, "return_documents": documents, **body.engine_params()}, model_type="rerank",
        shape=lambda result: json.dumps(reranked(result, documents, lengths), ensure_ascii=False,
                                          allow_nan=False).encode())
