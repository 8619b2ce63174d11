"""The sentence-transformers engines. Imported only inside the worker process.

What is sentence-transformers' own lives here: loading a `SentenceTransformer` or `CrossEncoder`,
encoding and predicting, and counting tokens with the model's tokenizer. Checking the input,
batching concurrent requests, shortening vectors and ranking are core's (`EmbeddingEngine`,
`RerankEngine`).
"""

from __future__ import annotations

from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.types.embedding import EmbeddingEngine, Embeddings
from modelyard.types.engine import flag_option
from modelyard.types.rerank import RerankEngine, Scores

COMMON_OPTIONS = {
    "device": "where the model runs: cpu, cuda, cuda:1, mps (default: what sentence-transformers picks)",
    "torch_threads": "threads torch uses for this model (default MODELYARD_TORCH_THREADS)",
    "trust_remote_code": "run the model repository's own code (an admin key only)",
    "revision": "the hub revision of the weights",
}


class _TorchSettings:
    """Device, threads and the loading options both engines share."""

    kwargs: dict[str, Any]

    def _torch_setup(self) -> dict[str, Any]:
        self.threads = config.torch_threads(self.kwargs.pop("torch_threads", None))
        self.set_up_batch_thread()
        options = {k: self.kwargs.pop(k) for k in ("device", "trust_remote_code", "revision") if k in self.kwargs}
        if "trust_remote_code" in options:
            flag_option(options["trust_remote_code"], "trust_remote_code")
        return options

    def set_up_batch_thread(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)  # OpenMP keeps its thread count per thread


class SentenceTransformerEmbedding(_TorchSettings, EmbeddingEngine):
    launch_options = {
        **COMMON_OPTIONS,
        "normalize": "unit-length vectors, as OpenAI's (default true)",
        "truncate": "cut inputs longer than max_tokens (default true); false: refuse them with a 400",
    }

    def load(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.normalize = flag_option(self.kwargs.pop("normalize", True), "normalize")
        self.truncate = flag_option(self.kwargs.pop("truncate", True), "truncate")
        options = self._torch_setup()
        self.model = SentenceTransformer(self.model_path, **options)
        limit = self.registration.max_tokens
        if limit and (self.model.max_seq_length is None or limit < self.model.max_seq_length):
            self.model.max_seq_length = limit
        self.max_length = self.max_tokens = self.model.max_seq_length  # what it reads, whatever was registered
        self.normalized = self.normalize
        # renamed in sentence-transformers 6; the requirement allows 3 up
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimensions = dimension()
        self.tokenizer = self.model.tokenizer

    def embed_batch(self, texts: list[str], **params: Any) -> Embeddings:
        vectors = self.model.encode(texts, batch_size=len(texts), normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=False)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        counts = [len(ids) for ids in encoded["input_ids"]]
        return Embeddings(vectors, sum(counts), counts)

    def detokenize(self, ids: list[int]) -> str:
        if max(ids) >= len(self.tokenizer):
            raise InvalidRequest(f"token id {max(ids)} is not in this model's vocabulary of {len(self.tokenizer)}.")
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]


class CrossEncoderRerank(_TorchSettings, RerankEngine):
    launch_options = dict(COMMON_OPTIONS)

    def load(self) -> None:
        from sentence_transformers import CrossEncoder

        options = self._torch_setup()
        self.model = CrossEncoder(self.model_path, max_length=self.registration.max_tokens, **options)
        self.tokenizer = self.model.tokenizer
        self.max_length = (self.model.max_seq_length if hasattr(type(self.model), "max_seq_length")
                           else self.model.max_length)  # renamed in sentence-transformers 6

    def score_pairs(self, pairs: list[tuple[str, str]], **params: Any) -> Scores:
        scores = self.model.predict(pairs, batch_size=len(pairs), convert_to_numpy=True, show_progress_bar=False)
        encoded = self.tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation=True,
                                 max_length=self.max_length)
        counts = [len(ids) for ids in encoded["input_ids"]]
        return Scores([float(s) for s in scores], sum(counts), counts)
