"""POST /v1/completions, in OpenAI's shape, streaming as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelyard.errors import InvalidRequest
from modelyard_server import openai_shapes
from modelyard_server.auth import scoped
from modelyard_server.metrics import LlmMeter
from modelyard_server.openai_protocol import CompletionRequest
from modelyard_server.protocol import JSON_OR_EVENTS
from modelyard_server.state import server_state
from modelyard_server.streaming import model_response

router = APIRouter(route_class=scoped("inference"))


@router.post("/v1/completions", responses=JSON_OR_EVENTS)
async def completions(body: CompletionRequest, request: Request) -> Response:
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise InvalidRequest("prompt must be one string (a list of several prompts is not supported).")
        prompt = prompt[0]
    uid, usage = body.model, body.include_usage()
    meter = LlmMeter(server_state(request).metrics, uid, request.scope)
    return await model_response(request, uid, "generate", [prompt, body.generate_config()], {}, model_type="LLM",
                                form="events" if body.stream else "json",
                                shape=lambda result: openai_shapes.completion(uid, meter.whole(result)),
                                shape_events=lambda items: openai_shapes.completion_chunks(uid, meter.stream(items),
                                                                                           usage))
