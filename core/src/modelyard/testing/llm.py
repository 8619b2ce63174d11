"""The LLM suite: what every LLM engine must do, proven against the engine in-process.

Give a class-scoped `engine` fixture (a loaded `LLMEngine` whose greedy output is not empty for
`PROMPT`); override `PROMPT` or `MESSAGES` when your tiny model needs others.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

from modelyard.errors import InvalidRequest


def _whole(engine: Any, prompt: str, **config: Any) -> dict[str, Any]:
    return engine.generate(prompt, {"temperature": 0, **config})


def _streamed(engine: Any, prompt: str, **config: Any) -> tuple[str, list[dict[str, Any]]]:
    chunks = list(engine.generate(prompt, {"temperature": 0, "stream": True, **config}))
    return "".join(c["text"] for c in chunks), chunks


class LLMEngineSuite:
    PROMPT = "Once upon a time"
    MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]
    MAX_TOKENS = 16

    def test_streamed_equals_whole_at_temperature_0(self, engine):
        whole = _whole(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)
        text, chunks = _streamed(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)
        assert whole["text"] and text == whole["text"]
        assert chunks[-1]["finish_reason"] == whole["finish_reason"]
        assert chunks[-1]["usage"] == whole["usage"]

    def test_max_tokens_and_usage_counts(self, engine):
        whole = _whole(engine, self.PROMPT, max_tokens=5)
        usage = whole["usage"]
        assert usage["completion_tokens"] <= 5
        if whole["finish_reason"] == "length":
            assert usage["completion_tokens"] == 5
        assert usage["prompt_tokens"] == len(engine.encode(self.PROMPT))
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    def test_a_stop_string_ends_the_answer_even_across_chunks(self, engine):
        text = _whole(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)["text"]
        assert len(text) >= 6, f"the suite needs a greedy answer of 6 characters or more, got {text!r}"
        stop = text[3:6]
        cut = text.index(stop)
        stopped = _whole(engine, self.PROMPT, max_tokens=self.MAX_TOKENS, stop=[stop])
        assert stopped["text"] == text[:cut] and stopped["finish_reason"] == "stop"
        streamed, _ = _streamed(engine, self.PROMPT, max_tokens=self.MAX_TOKENS, stop=[stop])
        assert streamed == text[:cut]

    def test_parameters_it_cannot_honour_are_refused_by_name(self, engine):
        import pytest

        with pytest.raises(InvalidRequest, match="logit_bias"):
            engine.generate(self.PROMPT, {"logit_bias": {"1": 5}})
        if "n" not in engine.supported_params:
            with pytest.raises(InvalidRequest, match="Unsupported parameter for this model: n"):
                engine.generate(self.PROMPT, {"n": 2})
        with pytest.raises(InvalidRequest, match="temperature must be"):
            engine.generate(self.PROMPT, {"temperature": float("nan")})

    def test_a_prompt_beyond_the_context_is_refused(self, engine):
        import pytest

        with pytest.raises(InvalidRequest, match="context"):
            engine.generate("word " * (engine.context_length * 2), {"max_tokens": 1})
        with pytest.raises(InvalidRequest, match="context length"):
            engine.generate(self.PROMPT, {"max_tokens": engine.context_length})

    def test_a_closed_stream_stops_its_generation(self, engine):
        stream = engine.generate(self.PROMPT, {"temperature": 0, "stream": True,
                                               "max_tokens": max(64, self.MAX_TOKENS)})
        next(stream)
        stream.close()  # the client left
        started = time.monotonic()
        assert _whole(engine, self.PROMPT, max_tokens=2)["usage"]["completion_tokens"] <= 2
        assert time.monotonic() - started < 60  # the next request was not stuck behind the closed one

    def test_eight_concurrent_streams_each_equal_their_solo_text(self, engine):
        prompts = [f"{self.PROMPT} {i}" for i in range(8)]
        solo = [_whole(engine, p, max_tokens=self.MAX_TOKENS)["text"] for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda p: _streamed(engine, p, max_tokens=self.MAX_TOKENS)[0], prompts))
        assert together == solo

    def test_chat_streams_what_it_answers_whole(self, engine):
        if "chat" not in engine.registration.model_ability:
            return
        whole = engine.chat(self.MESSAGES, {"temperature": 0, "max_tokens": self.MAX_TOKENS})
        chunks = list(engine.chat(self.MESSAGES, {"temperature": 0, "max_tokens": self.MAX_TOKENS,
                                                  "stream": True}))
        assert "".join(c["text"] for c in chunks) == whole["text"]
