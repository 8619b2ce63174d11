"""POST /v1/chat/completions, in OpenAI's shape, streaming as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelyard_server import openai_shapes
from modelyard_server.auth import scoped
from modelyard_server.openai_protocol import ChatCompletionRequest
from modelyard_server.protocol import JSON_OR_EVENTS
from modelyard_server.streaming import llm_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/chat/completions", responses=JSON_OR_EVENTS)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    return await llm_response(request, body.model, "chat", [body.messages, body.generate_config()],
                              stream=bool(body.stream), include_usage=body.include_usage(),
                              whole=openai_shapes.chat_completion, chunks=openai_shapes.chat_chunks)
