"""Rerank: score documents against a query (/v1/rerank)."""

from __future__ import annotations

from pydantic import Field

from modelyard.types import ModelSpec, ModelType, Registration, StrOrList


class RerankRegistration(Registration):
    version: int | None = None
    type: str = "unknown"
    max_tokens: int | None = None
    language: StrOrList = []
    model_specs: list[ModelSpec] = Field(min_length=1)


RERANK = ModelType(
    name="rerank",
    schema=RerankRegistration,
    abilities=("rerank",),
    routes=("/v1/rerank",),
)
