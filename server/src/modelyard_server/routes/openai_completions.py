"""POST /v1/completions, in OpenAI's shape, streaming as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from modelyard.errors import InvalidRequest
from modelyard.worker import protocol as wire
from modelyard_server import openai_shapes
from modelyard_server.openai_protocol import CompletionRequest
from modelyard_server.state import server_state
from modelyard_server.streaming import cancel_on_disconnect, first_then_rest, sse

router = APIRouter()


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequest("prompt must be one string (a list of several prompts is not supported).")
        prompt = prompt[0]
    supervisor = server_state(request).supervisor
    args = [prompt, body.generate_config()]
    if body.stream:
        items = await first_then_rest(supervisor.stream(body.model, "generate", args, {}, model_type="LLM",
                                                        mode=wire.MODE_STREAM))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(sse(openai_shapes.completion_chunks(body.model, items, include_usage)),
                                 media_type="text/event-stream")
    result = await cancel_on_disconnect(
        request, supervisor.call(body.model, "generate", args, {}, model_type="LLM", mode=wire.MODE_RAW))
    return Response(openai_shapes.completion(body.model, result), media_type="application/json")
