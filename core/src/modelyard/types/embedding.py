"""Embedding: text to vectors (OpenAI's /v1/embeddings)."""

from __future__ import annotations

from pydantic import Field

from modelyard.types import ModelSpec, ModelType, Registration, StrOrList


class EmbeddingRegistration(Registration):
    version: int | None = None
    dimensions: int | None = None
    max_tokens: int | None = None
    language: StrOrList = []
    model_specs: list[ModelSpec] = Field(min_length=1)


EMBEDDING = ModelType(
    name="embedding",
    schema=EmbeddingRegistration,
    abilities=("embed",),
    routes=("/v1/embeddings",),
)
