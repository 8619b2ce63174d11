"""Shape engines' results into OpenAI's objects: the neutral LLM chunks (`modelyard.llm.chunks`)
into chat and text completions and their chunks (one choice per chunk index, log-probabilities
where the engine gave them), and embeddings into the embeddings list."""

from __future__ import annotations

import array
import functools
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from modelyard.arrays import Array
from modelyard.errors import ModelError
from modelyard.llm.chunks import collect


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    if entries is None:
        return None

    def one(entry: dict[str, Any]) -> dict[str, Any]:
        return {"token": entry["token"], "logprob": entry["logprob"], "bytes": list(entry["token"].encode())}

    return {"content": [{**one(e), "top_logprobs": [one(t) for t in e.get("top_logprobs") or []]} for e in entries]}


def _completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    if entries is None:
        return None
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []} for e in entries],
            "text_offset": offsets}


def chat_completion(uid: str, items: list[dict[str, Any]]) -> bytes:
    answer = collect(items)
    choices = []
    for choice in answer["choices"]:
        message: dict[str, Any] = {"role": "assistant", "content": choice["text"]}
        if choice["reasoning"] is not None:
            message["reasoning_content"] = choice["reasoning"]
        choices.append({"index": choice["index"], "message": message, "logprobs": _chat_logprobs(choice["logprobs"]),
                        "finish_reason": choice["finish_reason"]})
    return _dumps({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                   "model": uid, "choices": choices, "usage": answer["usage"]})


async def chat_chunks(uid: str, batches: AsyncIterator[list[dict[str, Any]]],
                      include_usage: bool) -> AsyncIterator[list[bytes]]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": uid}
    started: set[int] = set()

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None,
              logprobs: list[dict[str, Any]] | None = None) -> bytes:
        return _dumps({**base, "choices": [{"index": index, "delta": delta, "logprobs": _chat_logprobs(logprobs),
                                            "finish_reason": finish_reason}]})

    # the first choice's role goes out before the model's first token, as OpenAI's does
    started.add(0)
    yield [chunk(0, {"role": "assistant", "content": ""})]
    async for batch in batches:
        out = []
        for item in batch:
            if "usage" in item:
                if include_usage:
                    out.append(_dumps({**base, "choices": [], "usage": item["usage"]}))
                continue
            index = item["index"]
            if index not in started:
                started.add(index)
                out.append(chunk(index, {"role": "assistant", "content": ""}))
            if item["finish_reason"] is not None:
                out.append(chunk(index, {}, item["finish_reason"]))
                continue
            delta: dict[str, Any] = {}
            if item["text"]:
                delta["content"] = item["text"]
            if item.get("reasoning"):
                delta["reasoning_content"] = item["reasoning"]
            out.append(chunk(index, delta, logprobs=item.get("logprobs")))
        yield out


def completion(uid: str, items: list[dict[str, Any]]) -> bytes:
    answer = collect(items)
    choices = [{"index": c["index"], "text": c["text"], "logprobs": _completion_logprobs(c["logprobs"]),
                "finish_reason": c["finish_reason"]} for c in answer["choices"]]
    return _dumps({"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                   "model": uid, "choices": choices, "usage": answer["usage"]})


async def completion_chunks(uid: str, batches: AsyncIterator[list[dict[str, Any]]],
                            include_usage: bool) -> AsyncIterator[list[bytes]]:
    base = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()), "model": uid}
    offsets: dict[int, int] = {}  # each choice's text so far, for its log-probabilities' text_offset
    async for batch in batches:
        out = []
        for item in batch:
            if "usage" in item:
                if include_usage:
                    out.append(_dumps({**base, "choices": [], "usage": item["usage"]}))
                continue
            index = item["index"]
            offset = offsets.get(index, 0)
            offsets[index] = offset + len(item["text"])
            out.append(_dumps({**base, "choices": [{
                "index": index, "text": item["text"], "logprobs": _completion_logprobs(item.get("logprobs"), offset),
                "finish_reason": item["finish_reason"]}]}))
        yield out


@functools.lru_cache(maxsize=16)
def _row_format(width: int) -> str:
    return ",".join(["%.9g"] * width)


def _json_floats(row: bytes) -> str:
    """A float32 row as a JSON array: 9 significant digits give back each float32 exactly, and one
    format of the whole row costs a quarter of json's shortest repr of the doubles they widen to."""
    values = array.array("f")
    values.frombytes(row)
    if sys.byteorder == "big":
        values.byteswap()
    text = _row_format(len(values)) % tuple(values)
    if "n" in text:  # nan or inf: no JSON number stands for them
        raise ModelError("The model returned vectors that are not finite numbers (NaN or infinity).")
    return f"[{text}]"


def embeddings(uid: str, result: dict[str, Any], encoding_format: str) -> bytes:
    """`result`: the engine's `Embeddings` as it came over the link (`vectors`: a float32 Array)."""
    vectors: Array = result["vectors"]
    if encoding_format == "base64":
        rows = [f'"{vectors.row_base64(i)}"' for i in range(len(vectors))]
    else:
        rows = [_json_floats(vectors.row_bytes(i)) for i in range(len(vectors))]
    data = ",".join(f'{{"object":"embedding","index":{i},"embedding":{row}}}' for i, row in enumerate(rows))
    tokens = int(result["prompt_tokens"])
    return (f'{{"object":"list","data":[{data}],"model":{json.dumps(uid, ensure_ascii=False)},'
            f'"usage":{{"prompt_tokens":{tokens},"total_tokens":{tokens}}}}}').encode()
