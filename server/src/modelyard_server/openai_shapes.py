"""Shape the engine's neutral results into OpenAI's chat and text completion objects and chunks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def chat_completion(uid: str, result: dict[str, Any]) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": result["text"]}
    if result.get("reasoning") is not None:
        message["reasoning_content"] = result["reasoning"]
    return _dumps({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": uid,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": result["finish_reason"]}],
        "usage": result["usage"],
    })


async def chat_chunks(uid: str, batches: AsyncIterator[list[dict[str, Any]]],
                      include_usage: bool) -> AsyncIterator[list[bytes]]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": uid}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return _dumps({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish_reason}]})

    yield [chunk({"role": "assistant", "content": ""})]
    async for batch in batches:
        out = []
        for item in batch:
            if item["finish_reason"] is None:
                delta: dict[str, Any] = {}
                if item["text"]:
                    delta["content"] = item["text"]
                if item.get("reasoning"):
                    delta["reasoning_content"] = item["reasoning"]
                out.append(chunk(delta))
            else:
                out.append(chunk({}, item["finish_reason"]))
                if include_usage:
                    out.append(_dumps({**base, "choices": [], "usage": item["usage"]}))
        yield out


def completion(uid: str, result: dict[str, Any]) -> bytes:
    return _dumps({
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": uid,
        "choices": [{"index": 0, "text": result["text"], "logprobs": None, "finish_reason": result["finish_reason"]}],
        "usage": result["usage"],
    })


async def completion_chunks(uid: str, batches: AsyncIterator[list[dict[str, Any]]],
                            include_usage: bool) -> AsyncIterator[list[bytes]]:
    base = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": uid}
    async for batch in batches:
        out = []
        for item in batch:
            out.append(_dumps({**base, "choices": [{"index": 0, "text": item["text"], "logprobs": None,
                                                   "finish_reason": item["finish_reason"]}]}))
            if item["finish_reason"] is not None and include_usage:
                out.append(_dumps({**base, "choices": [], "usage": item["usage"]}))
        yield out
