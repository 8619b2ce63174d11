"""The LLM suites: what every LLM engine must do, proven in-process (`LLMEngineSuite`) and end to
end through a real server (`LLMServerSuite`).

`LLMEngineSuite` needs a class-scoped `engine` fixture: a loaded `LLMEngine` (or
`AsyncLLMEngine`) whose greedy output for `PROMPT` is 6 characters or more. `LLMServerSuite`
needs a class-scoped `served` fixture: `(server, uid)`, a `modelyard.testing.server.Server` with
the engine's model launched as `uid`; filling its context should take a second or more (a longer
context, or a slower setting), so that a client leaving early is seen before generation ends.
Override `PROMPT` or `MESSAGES` when your tiny model needs others.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.llm.chunks import collect
from modelyard.testing.driving import Stream

# -- in-process -------------------------------------------------------------------------------

def answer(engine: Any, method: str, *args: Any) -> list[dict[str, Any]]:
    """Every chunk of one `chat` or `generate` call."""
    return list(Stream(getattr(engine, method)(*args)))


def _text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(c["text"] for c in chunks if c.get("index", 0) == index and "text" in c)


class LLMEngineSuite:
    PROMPT = "Once upon a time"
    MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]
    MAX_TOKENS = 16

    def generate(self, engine: Any, prompt: str, **config: Any) -> dict[str, Any]:
        """The whole answer, and its one choice."""
        whole = collect(answer(engine, "generate", prompt, {"temperature": 0, **config}))
        return {**whole["choices"][0], "usage": whole["usage"]}

    def test_an_answer_is_chunks_that_end_with_finish_and_usage(self, engine):
        chunks = answer(engine, "generate", self.PROMPT, {"temperature": 0, "max_tokens": self.MAX_TOKENS})
        assert "usage" in chunks[-1] and all("usage" not in c for c in chunks[:-1])
        finishes = [c for c in chunks[:-1] if c["finish_reason"]]
        assert len(finishes) == 1 and finishes[0] is chunks[-2] and finishes[0]["finish_reason"] in ("stop", "length")
        assert all(c["index"] == 0 for c in chunks[:-1]) and _text(chunks)

    def test_the_same_prompt_gives_the_same_text_at_temperature_0(self, engine):
        first = self.generate(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)
        second = self.generate(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)
        assert first["text"] and second["text"] == first["text"]
        assert (second["finish_reason"], second["usage"]) == (first["finish_reason"], first["usage"])

    def test_max_tokens_and_usage_counts(self, engine):
        whole = self.generate(engine, self.PROMPT, max_tokens=5)
        usage = whole["usage"]
        assert usage["completion_tokens"] <= 5
        if whole["finish_reason"] == "length":
            assert usage["completion_tokens"] == 5
        assert usage["prompt_tokens"] == len(engine.encode(self.PROMPT))
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    def test_a_stop_string_ends_the_answer_even_across_chunks(self, engine):
        text = self.generate(engine, self.PROMPT, max_tokens=self.MAX_TOKENS)["text"]
        assert len(text) >= 6, f"the suite needs a greedy answer of 6 characters or more, got {text!r}"
        stop = text[3:6]
        stopped = self.generate(engine, self.PROMPT, max_tokens=self.MAX_TOKENS, stop=[stop])
        assert stopped["text"] == text[:text.index(stop)] and stopped["finish_reason"] == "stop"
        assert stopped["usage"]["completion_tokens"] < self.MAX_TOKENS or stopped["text"] == text

    def test_parameters_it_cannot_honour_are_refused_by_name(self, engine):
        import pytest

        with pytest.raises(InvalidRequest, match="logit_bias"):
            answer(engine, "generate", self.PROMPT, {"logit_bias": {"1": 5}})
        with pytest.raises(InvalidRequest, match="temperature must be"):
            answer(engine, "generate", self.PROMPT, {"temperature": float("nan")})

    def test_a_prompt_beyond_the_context_is_refused(self, engine):
        import pytest

        with pytest.raises(InvalidRequest, match="context"):
            answer(engine, "generate", "word " * (engine.context_length * 2), {"max_tokens": 1})
        with pytest.raises(InvalidRequest, match="context length"):
            answer(engine, "generate", self.PROMPT, {"max_tokens": engine.context_length})

    def test_a_closed_stream_stops_its_generation(self, engine):
        stream = Stream(engine.generate(self.PROMPT, {"temperature": 0, "max_tokens": max(64, self.MAX_TOKENS)}))
        next(stream)
        stream.close()  # the client left
        started = time.monotonic()
        assert self.generate(engine, self.PROMPT, max_tokens=2)["usage"]["completion_tokens"] <= 2
        assert time.monotonic() - started < 60  # the next request was not stuck behind the closed one

    def test_eight_concurrent_streams_each_equal_their_solo_text(self, engine):
        prompts = [f"{self.PROMPT} {i}" for i in range(8)]
        solo = [self.generate(engine, p, max_tokens=self.MAX_TOKENS)["text"] for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda p: self.generate(engine, p, max_tokens=self.MAX_TOKENS)["text"], prompts))
        assert together == solo

    def test_concurrent_requests_with_their_own_limits_stops_and_seeds_each_equal_their_solo_answer(self, engine):
        prompts = [f"{self.PROMPT} {i}" for i in range(8)]
        texts = [self.generate(engine, p, max_tokens=self.MAX_TOKENS)["text"] for p in prompts]
        configs = []
        for i, text in enumerate(texts):
            config: dict[str, Any] = {"max_tokens": 2 + 2 * i if i % 2 else self.MAX_TOKENS, "seed": 1000 + i}
            if i % 3 == 0 and len(text) >= 6:
                config["stop"] = [text[3:6]]
            configs.append(config)
        solo = [self.generate(engine, p, **c) for p, c in zip(prompts, configs, strict=True)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda pc: self.generate(engine, pc[0], **pc[1]),
                                     zip(prompts, configs, strict=True)))
        assert together == solo
        assert any(a["finish_reason"] == "stop" for a in solo) and any(a["finish_reason"] == "length" for a in solo)

    def test_a_cancelled_stream_leaves_the_other_streams_unchanged(self, engine):
        prompts = [f"{self.PROMPT} {i}" for i in range(4)]
        solo = [self.generate(engine, p, max_tokens=self.MAX_TOKENS) for p in prompts]
        leaving = Stream(engine.generate(f"{self.PROMPT} leaving", {"temperature": 0,
                                                                     "max_tokens": max(64, self.MAX_TOKENS)}))
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            running = [pool.submit(self.generate, engine, p, max_tokens=self.MAX_TOKENS) for p in prompts]
            next(leaving)
            leaving.close()  # its client left while the others generate
            together = [f.result() for f in running]
        assert together == solo

    def test_chat_answers_like_generate(self, engine):
        if "chat" not in engine.registration.model_ability:
            return
        chunks = answer(engine, "chat", self.MESSAGES, {"temperature": 0, "max_tokens": self.MAX_TOKENS})
        again = answer(engine, "chat", self.MESSAGES, {"temperature": 0, "max_tokens": self.MAX_TOKENS})
        assert _text(chunks) + (collect(chunks)["choices"][0]["reasoning"] or "")
        assert collect(chunks) == collect(again) and "usage" in chunks[-1]

    def test_several_choices_and_logprobs_honoured_where_declared_refused_by_name_elsewhere(self, engine):
        import pytest

        if "n" not in engine.supported_params:
            with pytest.raises(InvalidRequest, match="Unsupported parameter for this model: n"):
                answer(engine, "generate", self.PROMPT, {"n": 2})
        else:
            whole = collect(answer(engine, "generate", self.PROMPT, {"n": 3, "max_tokens": 4, "temperature": 0}))
            assert [c["index"] for c in whole["choices"]] == [0, 1, 2]
            assert all(c["finish_reason"] for c in whole["choices"])
            assert whole["usage"]["completion_tokens"] <= 3 * 4
        if "logprobs" not in engine.supported_params:
            with pytest.raises(InvalidRequest, match="logprobs"):
                answer(engine, "generate", self.PROMPT, {"logprobs": 2})
        else:
            whole = collect(answer(engine, "generate", self.PROMPT, {"logprobs": 2, "max_tokens": 4,
                                                                     "temperature": 0}))
            choice = whole["choices"][0]
            assert "".join(e["token"] for e in choice["logprobs"]) == choice["text"]
            assert all(e["logprob"] <= 0 and len(e["top_logprobs"]) == 2 for e in choice["logprobs"])


# -- end to end ------------------------------------------------------------------------------

def _events(response: Any) -> list[dict[str, Any]]:
    out = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


class LLMServerSuite:
    PROMPT = "Once upon a time"
    MESSAGES = [{"role": "user", "content": "Hello, how are you?"}]
    MAX_TOKENS = 16

    def post(self, served, path: str, **body: Any) -> Any:
        server, uid = served
        with server.http() as http:
            return http.post(path, json={"model": uid, **body}, timeout=120)

    def stream(self, served, path: str, **body: Any) -> list[dict[str, Any]]:
        server, uid = served
        with server.http() as http, http.stream("POST", path, json={"model": uid, "stream": True, **body},
                                                timeout=120) as response:
            assert response.status_code == 200, response.read()
            return _events(response)

    def completion(self, served, **body: Any) -> dict[str, Any]:
        response = self.post(served, "/v1/completions", prompt=self.PROMPT, temperature=0, **body)
        assert response.status_code == 200, response.text
        return response.json()

    def test_completions_stream_what_they_answer_whole(self, served):
        whole = self.completion(served, max_tokens=self.MAX_TOKENS)
        events = self.stream(served, "/v1/completions", prompt=self.PROMPT, temperature=0,
                             max_tokens=self.MAX_TOKENS, stream_options={"include_usage": True})
        text = "".join(e["choices"][0]["text"] for e in events if e.get("choices"))
        assert whole["choices"][0]["text"] and text == whole["choices"][0]["text"]
        finish = [e["choices"][0]["finish_reason"] for e in events if e.get("choices") and
                  e["choices"][0]["finish_reason"]]
        assert finish == [whole["choices"][0]["finish_reason"]]
        assert events[-1]["choices"] == [] and events[-1]["usage"] == whole["usage"]

    def test_chat_streams_what_it_answers_whole(self, served):
        response = self.post(served, "/v1/chat/completions", messages=self.MESSAGES, temperature=0,
                             max_tokens=self.MAX_TOKENS)
        assert response.status_code == 200, response.text
        message = response.json()["choices"][0]["message"]
        events = self.stream(served, "/v1/chat/completions", messages=self.MESSAGES, temperature=0,
                             max_tokens=self.MAX_TOKENS)
        deltas = [e["choices"][0]["delta"] for e in events if e.get("choices")]
        assert deltas[0]["role"] == "assistant"
        assert "".join(d.get("content") or "" for d in deltas) == message["content"]
        assert "".join(d.get("reasoning_content") or "" for d in deltas) == (message.get("reasoning_content") or "")

    def test_max_tokens_and_usage_counts(self, served):
        whole = self.completion(served, max_tokens=5)
        usage = whole["usage"]
        assert 0 < usage["completion_tokens"] <= 5 and usage["prompt_tokens"] > 0
        if whole["choices"][0]["finish_reason"] == "length":
            assert usage["completion_tokens"] == 5
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    def test_a_stop_string_ends_the_answer_streamed_and_whole(self, served):
        text = self.completion(served, max_tokens=self.MAX_TOKENS)["choices"][0]["text"]
        assert len(text) >= 6, f"the suite needs a greedy answer of 6 characters or more, got {text!r}"
        stop = text[3:6]
        stopped = self.completion(served, max_tokens=self.MAX_TOKENS, stop=[stop])["choices"][0]
        assert stopped["text"] == text[:text.index(stop)] and stopped["finish_reason"] == "stop"
        events = self.stream(served, "/v1/completions", prompt=self.PROMPT, temperature=0,
                             max_tokens=self.MAX_TOKENS, stop=[stop])
        assert "".join(e["choices"][0]["text"] for e in events) == stopped["text"]

    def test_parameters_it_cannot_honour_are_a_400_by_name(self, served):
        for body, name in (({"logit_bias": {"1": 5}}, "logit_bias"), ({"temperature": 5}, "temperature"),
                           ({"n": 2}, "n"), ({"logprobs": True, "top_logprobs": 2}, "logprobs")):
            response = self.post(served, "/v1/chat/completions", messages=self.MESSAGES, max_tokens=2, **body)
            if response.status_code == 200:
                assert name in ("n", "logprobs"), f"{body} was accepted"  # the engine honours it
                continue
            assert response.status_code == 400 and name in response.json()["detail"], response.text
        streamed = self.post(served, "/v1/completions", prompt=self.PROMPT, stream=True, logit_bias={"1": 5})
        assert streamed.status_code == 400 and "logit_bias" in streamed.json()["detail"]

    def test_a_prompt_beyond_the_context_is_a_400(self, served):
        response = self.post(served, "/v1/completions", prompt="word " * 100_000, max_tokens=1)
        assert response.status_code == 400 and "context" in response.json()["detail"], response.text
        response = self.post(served, "/v1/completions", prompt=self.PROMPT, max_tokens=10_000_000)
        assert response.status_code == 400 and "context length" in response.json()["detail"], response.text

    def test_a_client_that_leaves_stops_its_generation(self, served):
        server, uid = served

        def stopped() -> list[str]:
            return [x for x in server.model_log(uid).splitlines()
                    if x.startswith("modelyard: generation stopped after")]

        from modelyard.testing.server import wait_until

        # Up to three tries: on a loaded 2-core machine an engine whose processes spin (vLLM's) can
        # keep the server off the CPU until a fast model has filled its whole context (seen once in
        # CI), and an answer that has ended has nothing left to stop.
        for _ in range(3):
            before = len(stopped())
            with server.http() as http, http.stream("POST", "/v1/completions", json={
                    "model": uid, "prompt": self.PROMPT, "temperature": 0, "stream": True}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        break  # the first token's event: then leave
            if wait_until(lambda before=before: len(stopped()) > before, timeout=20):
                break
        else:
            raise AssertionError("the generation went on, three times")
        made, most = (int(x) for x in stopped()[-1].split()[4:9:4])
        assert made < most

    def test_eight_concurrent_streams_each_equal_their_solo_text(self, served):
        prompts = [f"{self.PROMPT} {i}" for i in range(8)]

        def streamed(prompt: str) -> str:
            events = self.stream(served, "/v1/completions", prompt=prompt, temperature=0, max_tokens=self.MAX_TOKENS)
            return "".join(e["choices"][0]["text"] for e in events)

        solo = [self.post(served, "/v1/completions", prompt=p, temperature=0,
                          max_tokens=self.MAX_TOKENS).json()["choices"][0]["text"] for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(streamed, prompts)) == solo
