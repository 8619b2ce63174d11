"""The vLLM embedding engine: vLLM's pooling runner (a sentence-transformers or BERT-like model as
it is, a generating model converted to embed). Imported only inside the worker process.

vLLM batches every request in flight itself, so each input goes to it as it comes instead of
through the base's batch thread; the rest (input forms, `dimensions`, refusing long inputs when
truncation is off) is the embedding base's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.types.embedding import EmbeddingEngine
from modelyard_engine_vllm import adapter, startup


class VllmEmbedding(EmbeddingEngine):
    launch_options = {**startup.ENGINE_OPTIONS,
                      "normalize": "unit-length vectors, as OpenAI's (default true)",
                      **startup.CPU_OPTIONS}
    base_launch_options: Mapping[str, str] = {}  # no batch thread: vLLM's own scheduler batches

    def load(self) -> None:
        options = startup.engine_arguments(self.model_uid, self.kwargs)
        normalize = options.pop("normalize", True)
        if not isinstance(normalize, bool):
            raise InvalidRequest(f"Launch option normalize must be true or false, got {normalize!r}.")
        # vLLM's pooler normalizes only where the model's sentence-transformers modules say so
        self.normalized = normalize
        if self.registration.max_tokens:
            options.setdefault("max_model_len", self.registration.max_tokens)
        self.engine_args = options
        import vllm  # noqa: F401  (imported here, in the loading thread: seconds)

    async def start(self) -> None:
        self.engine = startup.start_engine(self.model_uid, self.model_path, self.engine_args, pooling=True)
        self.tokenizer = adapter.tokenizer(self.engine)
        self.max_tokens = adapter.max_model_len(self.engine)

    async def gathered(self, rows: Sequence[str], params: Mapping[str, Any]) -> list[tuple[bytes, int]]:
        return list(await asyncio.gather(*(self._embed(text) for text in rows)))

    async def _embed(self, text: str) -> tuple[bytes, int]:
        ids = self.tokenizer.encode(text, truncation=True, max_length=self.max_tokens)
        try:
            return await adapter.embed(self.engine, ids, self.normalized), len(ids)
        except Exception as exc:
            startup.raise_as_modelyard_error(exc)
            raise

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(self.tokenizer.encode(text)) for text in texts]

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
