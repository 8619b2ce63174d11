"""POST /v1/chat/completions, in OpenAI's shape, streaming as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelyard.worker import protocol as wire
from modelyard_server import openai_shapes
from modelyard_server.openai_protocol import ChatCompletionRequest
from modelyard_server.state import server_state
from modelyard_server.streaming import cancel_on_disconnect, first_then_rest, sse

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    supervisor = server_state(request).supervisor
    args = [body.messages, body.generate_config()]
    if body.stream:
        items = await first_then_rest(supervisor.stream(body.model, "chat", args, {}, model_type="LLM",
                                                        mode=wire.MODE_STREAM))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(sse(openai_shapes.chat_chunks(body.model, items, include_usage)),
                                 media_type="text/event-stream")
    result = await cancel_on_disconnect(
        request, supervisor.call(body.model, "chat", args, {}, model_type="LLM", mode=wire.MODE_RAW))
    return Response(openai_shapes.chat_completion(body.model, result), media_type="application/json")
