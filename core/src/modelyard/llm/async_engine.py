"""The base of an LLM engine whose library is asynchronous (vLLM's shape): its generation is an
async generator of outputs, which may carry several choices (`n`) and log-probabilities, and
which may apply stop strings itself. It shares `LLMEngine`'s checks, stop strings, reasoning
split, usage and chunks; the worker runs its stream on its event loop.

An engine implements `load`, `encode_chat`, `encode` and `stream_deltas`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from modelyard.llm import chunks
from modelyard.llm.engine import Answer, Generation, LLMEngine


@dataclass
class Delta:
    """What one choice generated since its last delta."""

    #: the new text, or one text per new token ("" for a token with no text yet): with per-token
    #: texts, a stop string inside also ends the token count at its own token
    text: str | list[str]
    index: int = 0
    #: how many tokens `text` stands for, when it is one string (default 1)
    tokens: int | None = None
    #: set on a choice's last delta: "stop" (an end token, or a stop string the engine applied) or "length"
    finish_reason: str | None = None
    #: one entry per token, as in `modelyard.llm.chunks`, when the request asked for them
    logprobs: list[dict[str, Any]] | None = None


class AsyncLLMEngine(LLMEngine):
    #: True when the library applies the stop strings itself (vLLM does): give it
    #: `self.stop_strings(generation)` (the registration's and the request's); the base then only
    #: splits reasoning and counts.
    applies_stops: bool = False

    async def stream_deltas(self, prompt_ids: list[int], generation: Generation) -> AsyncIterator[Delta]:
        """Yield each choice's deltas (`generation.params.n` choices, index 0 up), and stop soon after
        `generation.cancelled` is set or this generator is closed (abort the library's request)."""
        raise NotImplementedError
        yield

    def stream_tokens(self, prompt_ids: list[int], generation: Generation) -> Any:
        raise TypeError("an AsyncLLMEngine streams through stream_deltas")

    async def _chunks(self, prompt_ids: list[int], generation: Generation,  # type: ignore[override]
                      split_reasoning: bool) -> AsyncIterator[dict]:
        answers: dict[int, Answer] = {}
        finished: dict[int, str] = {}
        n = generation.params.n
        try:
            async with contextlib.aclosing(self.stream_deltas(prompt_ids, generation)) as deltas:
                async for delta in deltas:
                    index = delta.index
                    if index in finished:
                        continue  # the base stopped this choice at a stop string; the library went on
                    answer = answers.get(index)
                    if answer is None:
                        answer = answers[index] = self._answer(index, generation, split_reasoning,
                                                               stops=not self.applies_stops)
                    texts = delta.text if isinstance(delta.text, list) else [delta.text]
                    tokens = len(texts) if isinstance(delta.text, list) else delta.tokens
                    tokens = 1 if tokens is None else tokens
                    out, dropped = answer.feed(texts, delta.logprobs)
                    generation.completion_tokens += tokens - dropped
                    if out:
                        yield out
                    reason = "stop" if answer.stopped else delta.finish_reason
                    if reason:
                        finished[index] = reason
                        for piece in answer.flush():
                            yield piece
                        yield chunks.finish(reason, index=index)
                        if len(finished) >= n:
                            break
            for index in range(n):  # choices the library ended without saying why: they ran out of room
                if index not in finished:
                    answer = answers.get(index)
                    for piece in answer.flush() if answer else ():
                        yield piece
                    yield chunks.finish("length", index=index)
            yield chunks.usage(generation.prompt_tokens, generation.completion_tokens)
        except (GeneratorExit, asyncio.CancelledError):
            generation.closed_early()
            raise
        finally:
            generation.cancelled.set()
