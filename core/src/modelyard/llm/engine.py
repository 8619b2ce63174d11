"""The base class of every LLM engine, in the worker: the request logic engines share.

An engine implements `load`, `encode_chat`, `encode` and `stream_tokens`; this class turns those
into the `chat` and `generate` abilities: parameter checks, the context-length check, stop
strings (also across chunks), the reasoning split, usage counts, cancellation, and the neutral
chunks the server shapes into OpenAI's responses:

    {"text": str, "reasoning": str | None, "finish_reason": None | "stop" | "length", "usage": {...}?}
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.llm.params import ALL_PARAMS, GenerateParams, parse_params
from modelyard.llm.reasoning import ReasoningSplitter
from modelyard.llm.stops import StopMatcher
from modelyard.types import ModelSpec
from modelyard.types.engine import EngineBase
from modelyard.types.llm import LLMRegistration


@dataclass
class Generation:
    """One request's state, shared between the base class and the engine's token loop."""

    prompt_tokens: int
    max_tokens: int
    params: GenerateParams
    cancelled: threading.Event = field(default_factory=threading.Event)
    completion_tokens: int = 0
    finish_reason: str | None = None


class LLMEngine(EngineBase):
    #: The generation parameters this engine honours; a request naming another one is a 400.
    # `n` (choices per request) only where an engine declares it: one choice for n=2 would be a silent lie
    supported_params: frozenset[str] = ALL_PARAMS - {"n"}
    #: The most bytes of text one token can stand for (set at load from the vocabulary): a prompt
    #: longer than the context at this many bytes per token is refused before it is tokenized.
    max_token_bytes: int | None = None
    #: The token an empty prompt starts from; without one, an empty prompt is a 400.
    bos_token_id: int | None = None

    registration: LLMRegistration

    def __init__(self, model_uid: str, registration: LLMRegistration, spec: ModelSpec, model_path: str,
                 **kwargs: Any):
        super().__init__(model_uid, registration, spec, model_path, **kwargs)
        self.context_length = registration.context_length

    # -- what an engine implements (and load) ----------------------------------------------

    def encode_chat(self, messages: list[dict[str, Any]], template_kwargs: dict[str, Any]) -> list[int]:
        """The prompt token ids of a conversation, with the generation prompt appended."""
        raise NotImplementedError

    def encode(self, prompt: str) -> list[int]:
        raise NotImplementedError

    def stream_tokens(self, prompt_ids: list[int], generation: Generation) -> Iterator[str | list[str]]:
        """Yield text deltas; count `generation.completion_tokens`, set `finish_reason`
        ("stop" at an end token, "length" at max_tokens), and stop soon after `cancelled` is set.
        A list is the tokens that came together, one text each ("" for a token with no text yet):
        they make one chunk, and a stop string inside still ends the count at its own token."""
        raise NotImplementedError

    # -- the abilities --------------------------------------------------------------------

    def chat(self, messages: Any, generate_config: dict[str, Any] | None = None) -> Any:
        params = parse_params(generate_config, self.supported_params)
        _check_messages(messages)
        self._check_size(sum(len(str(m.get("content") or "").encode()) for m in messages))
        prompt_ids = self.encode_chat(messages, params.chat_template_kwargs)
        return self._respond(prompt_ids, params, split_reasoning=True)

    def generate(self, prompt: Any, generate_config: dict[str, Any] | None = None) -> Any:
        params = parse_params(generate_config, self.supported_params)
        if not isinstance(prompt, str):
            raise InvalidRequest("prompt must be a string.")
        self._check_size(len(prompt.encode()))
        prompt_ids = self.encode(prompt) if prompt else []
        if not prompt_ids:
            if self.bos_token_id is None:
                raise InvalidRequest("The prompt is empty, and this model has no beginning-of-sequence token to "
                                     "start from: give a prompt.")
            prompt_ids = [self.bos_token_id]
        return self._respond(prompt_ids, params, split_reasoning=False)

    def _check_size(self, text_bytes: int) -> None:
        """Refuse, before tokenizing it, a prompt that cannot fit the context whatever its tokens."""
        if self.max_token_bytes and text_bytes > self.context_length * self.max_token_bytes:
            raise InvalidRequest(f"The prompt is {text_bytes} bytes long: more than this model's context of "
                                 f"{self.context_length} tokens can hold even at {self.max_token_bytes} bytes per "
                                 "token. Shorten the prompt.")

    def _respond(self, prompt_ids: list[int], params: GenerateParams, split_reasoning: bool) -> Any:
        room = self.context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidRequest(f"The prompt has {len(prompt_ids)} tokens; this model's context length is "
                                 f"{self.context_length}. Shorten the prompt.")
        if params.max_tokens is not None and params.max_tokens > room:
            raise InvalidRequest(f"The prompt ({len(prompt_ids)} tokens) plus max_tokens ({params.max_tokens}) "
                                 f"exceeds this model's context length ({self.context_length}).")
        generation = Generation(len(prompt_ids), params.max_tokens or room, params)
        chunks = self._chunks(prompt_ids, generation, split_reasoning)
        return chunks if params.stream else _collect(chunks)

    def _reasoning_splitter(self, split: bool) -> ReasoningSplitter | None:
        start, end = self.registration.reasoning_start_tag, self.registration.reasoning_end_tag
        if not split or not start or not end:
            return None
        return ReasoningSplitter(start, end)

    def _chunks(self, prompt_ids: list[int], generation: Generation, split_reasoning: bool) -> Iterator[dict]:
        stops = StopMatcher(list(self.registration.stop or []) + generation.params.stop)
        splitter = self._reasoning_splitter(split_reasoning)

        def piece(text: str) -> dict[str, Any] | None:
            if splitter is None:
                return {"text": text, "reasoning": None, "finish_reason": None} if text else None
            reasoning, content = splitter.feed(text)
            if not reasoning and not content:
                return None
            return {"text": content, "reasoning": reasoning or None, "finish_reason": None}

        try:
            for delta in self.stream_tokens(prompt_ids, generation):
                texts = delta if isinstance(delta, list) else [delta]
                kept = []
                for used, text in enumerate(texts, 1):
                    kept.append(stops.feed(text))
                    if stops.stopped:
                        # the tokens after the stop's own were generated, but are not part of the answer
                        generation.completion_tokens -= len(texts) - used
                        break
                out = piece("".join(kept))
                if out:
                    yield out
                if stops.stopped:
                    generation.finish_reason = "stop"
                    break
            tail = stops.flush()
            out = piece(tail) if tail else None
            if out:
                yield out
            if splitter is not None:
                reasoning, content = splitter.flush()
                if reasoning or content:
                    yield {"text": content, "reasoning": reasoning or None, "finish_reason": None}
            usage = {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
                     "total_tokens": generation.prompt_tokens + generation.completion_tokens}
            yield {"text": "", "reasoning": None, "finish_reason": generation.finish_reason or "length",
                   "usage": usage}
        finally:
            generation.cancelled.set()  # a closed stream (client gone) or a stop string ends the engine's loop


def _collect(chunks: Iterator[dict]) -> dict[str, Any]:
    text, reasoning, last = [], [], {}
    for chunk in chunks:
        text.append(chunk["text"])
        if chunk.get("reasoning"):
            reasoning.append(chunk["reasoning"])
        last = chunk
    return {"text": "".join(text), "reasoning": "".join(reasoning) if reasoning else None,
            "finish_reason": last.get("finish_reason"), "usage": last.get("usage")}


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list of {role, content} objects.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string role.")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI's content parts: text parts only, joined
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise InvalidRequest(f"messages[{i}].content has non-text parts; this model takes text only.")
            message["content"] = "".join(p.get("text", "") for p in content)
        elif content is not None and not isinstance(content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string or a list of text parts.")
