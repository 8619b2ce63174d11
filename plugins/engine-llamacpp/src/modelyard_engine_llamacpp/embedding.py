"""The llama.cpp embedding engine (llama-cpp-python). Imported only inside the worker process.

What is llama.cpp's own lives here: opening the GGUF with `embedding=True` and the model's pooling,
and `Llama.embed` on a batch. Checking the input, gathering concurrent requests into batches,
shortening vectors and refusing long inputs are core's (`EmbeddingEngine`); batches run one at a
time in the batch thread, so the `Llama` is never used from two threads.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.types.embedding import EmbeddingEngine, Embeddings
from modelyard.types.engine import flag_option
from modelyard_engine_llamacpp.loading import LAUNCH_OPTIONS, open_gguf

POOLING = {"mean": 1, "cls": 2, "last": 3}  # llama.h's LLAMA_POOLING_TYPE_*
_NONE, _UNSPECIFIED = 0, -1


class LlamaCppEmbedding(EmbeddingEngine):
    launch_options = {
        **LAUNCH_OPTIONS,
        "pooling": "mean, cls or last (default: the GGUF's own pooling, else mean)",
        "normalize": "unit-length vectors, as OpenAI's (default true)",
        "truncate": "cut inputs longer than n_ctx (default true); false: refuse them with a 400",
    }

    def load(self) -> None:
        options = dict(self.kwargs)
        pooling = options.pop("pooling", None)
        if pooling is not None and pooling not in POOLING:
            raise InvalidRequest(f"Launch option pooling must be one of {', '.join(POOLING)}, got {pooling!r}.")
        self.normalize = flag_option(options.pop("normalize", True), "normalize")
        self.truncate = flag_option(options.pop("truncate", True), "truncate")
        self.llm = self._open(options, pooling)
        if self.llm.pooling_type() == _NONE:  # a chat model's GGUF: it pools nothing of its own
            self.llm.close()
            self.llm = self._open(options, "mean")
        self.max_tokens = min(self.llm.n_ctx(), self.llm.n_batch)  # llama.cpp pads the context; a batch is as asked
        self.dimensions = self.llm.n_embd()
        self.normalized = self.normalize

    def _open(self, options: dict[str, Any], pooling: str | None) -> Any:
        return open_gguf(self.model_path, self.spec, dict(options), self.registration.max_tokens, whole_batches=True,
                         embedding=True, pooling_type=POOLING[pooling] if pooling else _UNSPECIFIED)

    def embed_batch(self, texts: list[str], **params: Any) -> Embeddings:
        counts = [min(n, self.max_tokens) for n in self.count_tokens(texts)]
        vectors = self.llm.embed(texts, normalize=self.normalize, truncate=True)
        return Embeddings(vectors, sum(counts), counts)

    def count_tokens(self, texts: list[str]) -> list[int]:
        # as Llama.embed reads them: with the beginning token where the GGUF's tokenizer adds one
        return [len(self.llm.tokenize(text.encode(), add_bos=True, special=False)) for text in texts]

    def detokenize(self, ids: list[int]) -> str:
        vocabulary = self.llm.n_vocab()
        if max(ids) >= vocabulary:
            raise InvalidRequest(f"token id {max(ids)} is not in this model's vocabulary of {vocabulary}.")
        return self.llm.detokenize(ids).decode("utf-8", "replace")
