"""The base class of every LLM engine, in the worker: the request logic engines share.

An engine implements `load`, `encode_chat`, `encode` and `stream_tokens` (or, async, see
`modelyard.llm.async_engine`); this class turns those into the `chat` and `generate` abilities:
parameter checks, the context-length check, stop strings (also across chunks), the reasoning split,
usage counts, cancellation. Both abilities always answer with the neutral chunks of
`modelyard.llm.chunks`: the server streams them or collects them into one answer.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.llm import chunks
from modelyard.llm.params import BASE_PARAMS, GenerateParams, parse_params
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

    def closed_early(self) -> None:
        """The answer's stream was closed before its end (the client left): stop generating, and
        say so in the model's log."""
        self.cancelled.set()
        most = self.max_tokens * self.params.n  # the tokens of every choice
        print(f"modelyard: generation stopped after {self.completion_tokens} of at most {most} tokens",
              file=sys.stderr, flush=True)


class LLMEngine(EngineBase):
    #: The generation parameters this engine honours; a request naming another one is a 400.
    supported_params: frozenset[str] = BASE_PARAMS
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
        return self._chunks(prompt_ids, generation, split_reasoning)

    def stop_strings(self, generation: Generation) -> list[str]:
        """The strings that end an answer: the registration's own and the request's."""
        return list(self.registration.stop or []) + generation.params.stop

    def _answer(self, index: int, generation: Generation, split_reasoning: bool, *, stops: bool = True) -> Answer:
        start, end = self.registration.reasoning_start_tag, self.registration.reasoning_end_tag
        splitter = ReasoningSplitter(start, end) if split_reasoning and start and end else None
        return Answer(index, StopMatcher(self.stop_strings(generation) if stops else []), splitter)

    def _chunks(self, prompt_ids: list[int], generation: Generation, split_reasoning: bool) -> Iterator[dict]:
        if generation.params.n > 1 or generation.params.logprobs is not None:
            # stream_tokens has one choice and no log-probabilities: declaring them takes AsyncLLMEngine
            raise InvalidRequest("This model's engine answers with one choice and no log-probabilities: leave out "
                                 "n and logprobs.")
        answer = self._answer(0, generation, split_reasoning)
        try:
            for delta in self.stream_tokens(prompt_ids, generation):
                out, dropped = answer.feed(delta if isinstance(delta, list) else [delta])
                # the tokens after a stop's own were generated, but are not part of the answer
                generation.completion_tokens -= dropped
                if out:
                    yield out
                if answer.stopped:
                    generation.finish_reason = "stop"
                    break
            yield from answer.flush()
            yield chunks.finish(generation.finish_reason or "length")
            yield chunks.usage(generation.prompt_tokens, generation.completion_tokens)
        except GeneratorExit:
            generation.closed_early()
            raise
        finally:
            generation.cancelled.set()  # a stop string ends the engine's loop too


class Answer:
    """One choice's text on its way out: stop strings (held back while they may be starting), and
    the reasoning split."""

    def __init__(self, index: int, stops: StopMatcher, splitter: ReasoningSplitter | None):
        self.index, self.stops, self.splitter = index, stops, splitter

    @property
    def stopped(self) -> bool:
        return self.stops.stopped

    def feed(self, texts: list[str], logprobs: list[dict[str, Any]] | None = None) -> tuple[dict | None, int]:
        """The chunk for these tokens' texts (None when nothing is ready to go out), and how many of
        them came after a stop string's own token."""
        kept = []
        for used, text in enumerate(texts, 1):
            kept.append(self.stops.feed(text))
            if self.stops.stopped:
                if logprobs is not None and len(logprobs) == len(texts):  # one entry per token's text
                    logprobs = logprobs[:used]
                return self._piece("".join(kept), logprobs), len(texts) - used
        return self._piece("".join(kept), logprobs), 0

    def flush(self) -> list[dict]:
        """What was held back, at the end of generation."""
        out = []
        tail = self.stops.flush()
        piece = self._piece(tail, None) if tail else None
        if piece:
            out.append(piece)
        if self.splitter is not None:
            reasoning, content = self.splitter.flush()
            if reasoning or content:
                out.append(chunks.delta(content, index=self.index, reasoning=reasoning or None))
        return out

    def _piece(self, text: str, logprobs: list[dict[str, Any]] | None) -> dict | None:
        if self.splitter is None:
            return chunks.delta(text, index=self.index, logprobs=logprobs) if text or logprobs else None
        reasoning, content = self.splitter.feed(text)
        if not reasoning and not content and not logprobs:
            return None
        return chunks.delta(content, index=self.index, reasoning=reasoning or None, logprobs=logprobs)


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
