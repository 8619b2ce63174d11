"""POST /v1/chat/completions, in OpenAI's shape, streaming as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelyard_server import openai_shapes
from modelyard_server.auth import scoped
from modelyard_server.metrics import LlmMeter
from modelyard_server.openai_protocol import ChatCompletionRequest
from modelyard_server.protocol import JSON_OR_EVENTS
from modelyard_server.state import server_state
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/chat/completions", responses=JSON_OR_EVENTS)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    uid, usage = body.model, body.include_usage()
    meter = LlmMeter(server_state(request).metrics, uid, request.scope)
    return await model_response(request, uid, "chat", [body.messages, body.generate_config()], {}, model_type="LLM",
                                form="events" if body.stream else "json",
                                shape=lambda result: openai_shapes.chat_completion(uid, meter.whole(result)),
                                shape_events=lambda items: openai_shapes.chat_chunks(uid, meter.stream(items), usage))
