"""Embedding: text to vectors (OpenAI's /v1/embeddings).

An engine subclasses `EmbeddingEngine` and implements `embed_batch(texts) -> Embeddings`: the
vectors as one matrix (a numpy array, a torch tensor, an `Array`, or lists) and the tokens read.
The base checks the input and refuses parameters the engine cannot honour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from modelyard.errors import ModelError
from modelyard.types import ModelSpec, ModelType, Registration, StrOrList
from modelyard.types.engine import EngineBase, check_texts


class EmbeddingRegistration(Registration):
    version: int | None = None
    dimensions: int | None = None
    max_tokens: int | None = None
    language: StrOrList = []
    model_specs: list[ModelSpec] = Field(min_length=1)


@dataclass
class Embeddings:
    """`vectors`: one row per input, in input order; `prompt_tokens`: the tokens the inputs took."""

    vectors: Any
    prompt_tokens: int


class EmbeddingEngine(EngineBase):
    #: `dimensions` (OpenAI's: shorter vectors) is the one an engine most often honours.
    supported_params: frozenset[str] = frozenset()

    def embed(self, input: str | list[str], **params: Any) -> Embeddings:
        texts = check_texts(input, "input")
        found = self.embed_batch(texts, **self.refuse_unsupported(params, "embed"))
        rows = len(found.vectors)
        if rows != len(texts):
            raise ModelError(f"{type(self).__name__}.embed_batch returned {rows} vectors for {len(texts)} inputs")
        return found

    def embed_batch(self, texts: list[str], **params: Any) -> Embeddings:
        raise NotImplementedError(f"{type(self).__name__} does not implement embed_batch()")


EMBEDDING = ModelType(
    name="embedding",
    schema=EmbeddingRegistration,
    abilities=("embed",),
    routes=("/v1/embeddings",),
)
