"""The vLLM embedding engine: vLLM's pooling runner (a sentence-transformers or BERT-like model as
it is, a generating model converted to embed). Imported only inside the worker process.

vLLM batches every request in flight itself, so each input goes to it as it comes (tokenized in
the base's thread) instead of in the base's batches; the rest (input forms, `dimensions`, refusing
long inputs when truncation is off) is the embedding base's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.types.embedding import EmbeddingEngine
from modelyard.types.engine import flag_option
from modelyard_engine_vllm import adapter, startup


class VllmEmbedding(EmbeddingEngine):
    launch_options = {**startup.ENGINE_OPTIONS,
                      "normalize": "unit-length vectors, as OpenAI's (default true)",
                      "truncate": "cut inputs longer than max_tokens (default true); false: refuse them with a 400",
                      **startup.CPU_OPTIONS}
    base_launch_options: Mapping[str, str] = {}  # no batch thread: vLLM's own scheduler batches

    def load(self) -> None:
        options = startup.engine_arguments(self.model_uid, self.kwargs)
        # asked of vLLM on every input: its pooler would normalize only where the model's
        # sentence-transformers modules say so
        self.normalized = flag_option(options.pop("normalize", True), "normalize")
        self.truncate = flag_option(options.pop("truncate", True), "truncate")
        if self.registration.max_tokens:
            options.setdefault("max_model_len", self.registration.max_tokens)
        self.engine_args = options
        import vllm  # noqa: F401  (imported here, in the loading thread: seconds)

    async def start(self) -> None:
        self.engine = startup.start_engine(self.model_uid, self.model_path, self.engine_args, pooling=True)
        self.tokenizer = adapter.tokenizer(self.engine)
        self.max_tokens = adapter.max_model_len(self.engine)

    async def gathered(self, rows: Sequence[str], params: Mapping[str, Any]) -> list[tuple[bytes, int]]:
        # tokenized in the base's one thread, where count_tokens runs too: a tokenizer keeps its
        # truncation setting between calls, so it must never serve two at once (nor block the loop)
        ids = await self.batcher().in_thread(self._ids, rows)
        return list(await asyncio.gather(*(self._embed(one) for one in ids)))

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer.encode(text, truncation=True, max_length=self.max_tokens) for text in texts]

    async def _embed(self, ids: list[int]) -> tuple[bytes, int]:
        try:
            return await adapter.embed(self.engine, ids, self.normalized), len(ids)
        except Exception as exc:
            startup.raise_as_modelyard_error(exc, self.engine)
            raise

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer.encode(text)) for text in texts]

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
