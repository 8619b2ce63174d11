"""The llama.cpp LLM engine (llama-cpp-python). Imported only inside the worker process.

What is llama.cpp's own lives here: loading the GGUF, tokenizing, and its sampling loop
(`Llama.generate`). The rest is core's (`modelyard.llm`): generation runs in core's
`GeneratingThread`, one request after another (a `Llama` is not safe to use from two threads);
tokens come back through its `TokenHandover` and `Detokenizer`; chat templates (the registration's,
else the GGUF's `tokenizer.chat_template`) render in core's sandbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.llm import chat_template
from modelyard.llm.engine import Generation, LLMEngine
from modelyard.llm.handover import Detokenizer, GeneratingThread, TokenHandover
from modelyard_engine_llamacpp.loading import LAUNCH_OPTIONS, open_gguf


class LlamaCppLLM(LLMEngine):
    launch_options = {
        **LAUNCH_OPTIONS,
        "n_batch": "the prompt's batch size",
        "seed": "the default sampling seed",
    }

    def load(self) -> None:
        # the registration's context_length (Xinference's default: 2048), as Xinference's llama.cpp engine takes it
        self.llm = open_gguf(self.model_path, self.spec, dict(self.kwargs), self.context_length)
        self.context_length = self.llm.n_ctx()
        self.chat_template = self.registration.chat_template or self.llm.metadata.get("tokenizer.chat_template")
        ends = {self.llm.token_eos(), *(self.registration.stop_token_ids or [])}
        self.end_ids = sorted(t for t in ends if t is not None and t >= 0)
        bos = self.llm.token_bos()
        self.bos_token_id = bos if bos >= 0 else None
        self.special_tokens = {"bos_token": self._piece(bos), "eos_token": self._piece(self.llm.token_eos())}
        self.max_token_bytes = max((len(self.llm.detokenize([i], special=True)) for i in range(self.llm.n_vocab())),
                                   default=0) or None
        self.stream_window = config.stream_window()
        self.generating = GeneratingThread(f"generate-{self.model_uid}")

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace") if token >= 0 else ""

    def encode_chat(self, messages: list[dict[str, Any]], template_kwargs: dict[str, Any]) -> list[int]:
        if not self.chat_template:
            raise InvalidRequest(f"Model {self.model_uid!r} has no chat template (none in the registration, none in "
                                 "the GGUF): use /v1/completions, or register it with a chat_template.")
        text = chat_template.render(self.chat_template, messages, special_tokens=self.special_tokens,
                                    template_kwargs=template_kwargs)
        # the template wrote the special tokens it wants: parse them as such, and add none of its own
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def encode(self, prompt: str) -> list[int]:
        # add_bos: llama.cpp adds the beginning token only where the GGUF says its tokenizer does
        return self.llm.tokenize(prompt.encode(), add_bos=True, special=False)

    def stream_tokens(self, prompt_ids: list[int], generation: Generation) -> Iterator[list[str]]:
        params = generation.params
        handover = TokenHandover(self.stream_window)
        end_ids = set(self.end_ids) | set(params.stop_token_ids)
        greedy = params.temperature == 0

        def generate() -> None:
            if params.seed is not None:
                self.llm.set_seed(params.seed)
            made = 0
            # min_p and typical_p off: the same sampling as the transformers engine's
            for token in self.llm.generate(prompt_ids, temp=0.0 if greedy else params.temperature,
                                           top_p=1.0 if greedy else params.top_p, top_k=params.top_k,
                                           min_p=0.0, typical_p=1.0, repeat_penalty=params.repetition_penalty,
                                           frequency_penalty=params.frequency_penalty,
                                           presence_penalty=params.presence_penalty, reset=True):
                handover.put([token])
                made += 1
                if made >= generation.max_tokens or token in end_ids or generation.cancelled.is_set():
                    return

        detokenizer = Detokenizer(lambda ids: self.llm.detokenize(ids).decode("utf-8", "replace"), end_ids,
                                  generation)
        return self.generating.stream(generate, handover, detokenizer, generation)
