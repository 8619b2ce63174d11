"""A toy LLM on the async engine base (vLLM's shape): a word-level model whose next word is a
fixed function of the last two, generated as an async stream of deltas, with several choices
(`n`) and log-probabilities. The "weights" are a JSON file: the vocabulary and a seed."""

from __future__ import annotations

import asyncio
import json
import math
import random
import zlib
from pathlib import Path

from modelyard.errors import InvalidRequest
from modelyard.llm import chat_template
from modelyard.llm.async_engine import AsyncLLMEngine, Delta
from modelyard.llm.params import ALL_PARAMS

TEMPLATE = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")


class BabbleLLM(AsyncLLMEngine):
    supported_params = ALL_PARAMS - {"repetition_penalty", "min_tokens", "ignore_eos", "response_format"}
    launch_options = {"delay_ms": "milliseconds per generated word (default 1)"}

    def load(self) -> None:
        model = json.loads((Path(self.model_path) / "babble.json").read_text())
        self.vocab: list[str] = model["vocab"]
        self.seed = int(model["seed"])
        self.delay = float(self.kwargs.get("delay_ms", 1)) / 1000
        self.max_token_bytes = max(len(w.encode()) for w in self.vocab) + 1

    def encode(self, prompt: str) -> list[int]:
        return [self._id(word) for word in prompt.split()]

    def encode_chat(self, messages, template_kwargs):
        text = chat_template.render(self.registration.chat_template or TEMPLATE, messages,
                                    template_kwargs=template_kwargs)
        ids = self.encode(text)
        if not ids:
            raise InvalidRequest("The conversation has no words.")
        return ids

    def _id(self, word: str) -> int:
        return self.vocab.index(word) if word in self.vocab else zlib.crc32(word.encode()) % len(self.vocab)

    def _scores(self, context: list[int]) -> list[float]:
        a, b = (context[-2:] if len(context) >= 2 else [0, *context])[-2:]
        rng = random.Random(self.seed * 1_000_003 + a * 7919 + b)
        return [rng.uniform(-4, 4) for _ in self.vocab]

    async def stream_deltas(self, prompt_ids, generation):
        n = generation.params.n
        queue: asyncio.Queue = asyncio.Queue()
        choices = [asyncio.ensure_future(self._choice(i, prompt_ids, generation, queue)) for i in range(n)]
        try:
            ended = 0
            while ended < n:
                delta = await queue.get()
                if delta is None:
                    ended += 1
                else:
                    yield delta
            for choice in choices:
                choice.result()  # a choice's error is the answer's
        finally:
            for choice in choices:
                choice.cancel()

    async def _choice(self, index, prompt_ids, generation, queue) -> None:
        """One choice's words, put on `queue` one delta each, then None."""
        try:
            params = generation.params
            rng = random.Random((params.seed if params.seed is not None else random.getrandbits(32)) * 31 + index)
            context = list(prompt_ids)
            for step in range(generation.max_tokens):
                if generation.cancelled.is_set():
                    return
                scores = self._scores(context)
                if params.temperature == 0:
                    word = max(range(len(scores)), key=scores.__getitem__)
                else:
                    weights = [math.exp(s / params.temperature) for s in scores]
                    word = rng.choices(range(len(scores)), weights)[0]
                context.append(word)
                text = self.vocab[word] if step == 0 else " " + self.vocab[word]
                logprobs = None
                if params.logprobs is not None:
                    total = math.log(sum(math.exp(s) for s in scores))
                    top = sorted(range(len(scores)), key=lambda i: -scores[i])[:params.logprobs]
                    logprobs = [{"token": text, "logprob": scores[word] - total,
                                 "top_logprobs": [{"token": self.vocab[i], "logprob": scores[i] - total}
                                                  for i in top]}]
                last = step == generation.max_tokens - 1
                queue.put_nowait(Delta([text], index=index, logprobs=logprobs,
                                       finish_reason="length" if last else None))
                await asyncio.sleep(self.delay)
        finally:
            queue.put_nowait(None)
