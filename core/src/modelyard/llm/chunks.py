"""The neutral chunks every LLM engine streams, and the whole answer they add up to.

An answer is always a stream: the engine yields chunks, and a route that answers whole collects
them (`collect`), so streaming is decided once, by the request's transport. A chunk is one of

    {"index": 0, "text": str, "reasoning": str | None, "finish_reason": None, "logprobs": [...] | None}
    {"index": 0, "text": "", "reasoning": None, "finish_reason": "stop" | "length", "logprobs": None}
    {"usage": {"prompt_tokens": int, "completion_tokens": int, "total_tokens": int}}     (last)

`index` is the choice (an engine that honours `n` streams several, interleaved). `logprobs` is one
entry per token of the chunk's text, `{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}`,
when the request asked for them and the engine honours `logprobs`. The server shapes both forms
into OpenAI's objects; this module imports nothing heavy, so it serves both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def delta(text: str, *, index: int = 0, reasoning: str | None = None,
          logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "reasoning": reasoning, "finish_reason": None, "logprobs": logprobs}


def finish(reason: str, *, index: int = 0) -> dict[str, Any]:
    return {"index": index, "text": "", "reasoning": None, "finish_reason": reason, "logprobs": None}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def collect(chunks: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The whole answer: `{"choices": [{"index", "text", "reasoning", "finish_reason", "logprobs"}],
    "usage"}`, the choices in index order."""
    choices: dict[int, dict[str, Any]] = {}
    answer_usage = None
    for chunk in chunks:
        if "usage" in chunk:
            answer_usage = chunk["usage"]
            continue
        choice = choices.setdefault(chunk.get("index", 0), {"text": [], "reasoning": [], "logprobs": None,
                                                            "finish_reason": None})
        choice["text"].append(chunk["text"])
        if chunk.get("reasoning"):
            choice["reasoning"].append(chunk["reasoning"])
        if chunk.get("logprobs") is not None:
            choice["logprobs"] = (choice["logprobs"] or []) + list(chunk["logprobs"])
        if chunk.get("finish_reason"):
            choice["finish_reason"] = chunk["finish_reason"]
    return {"choices": [{"index": index, "text": "".join(c["text"]),
                         "reasoning": "".join(c["reasoning"]) if c["reasoning"] else None,
                         "finish_reason": c["finish_reason"], "logprobs": c["logprobs"]}
                        for index, c in sorted(choices.items())],
            "usage": answer_usage}
