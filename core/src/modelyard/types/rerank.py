"""Rerank: score documents against a query (/v1/rerank).

An engine subclasses `RerankEngine` and implements `score(query, documents) -> Scores`; the base
checks the input, ranks best first, applies `top_n` and `return_documents`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from modelyard.errors import InvalidRequest, ModelError
from modelyard.types import ModelSpec, ModelType, Registration, StrOrList
from modelyard.types.engine import EngineBase, check_texts, ranked


class RerankRegistration(Registration):
    version: int | None = None
    type: str = "unknown"
    max_tokens: int | None = None
    language: StrOrList = []
    model_specs: list[ModelSpec] = Field(min_length=1)


@dataclass
class Scores:
    scores: list[float]
    prompt_tokens: int


@dataclass
class RerankHit:
    index: int
    relevance_score: float
    document: str | None = None


@dataclass
class Reranked:
    results: list[RerankHit] = field(default_factory=list)
    prompt_tokens: int = 0


class RerankEngine(EngineBase):
    def rerank(self, documents: list[str], query: str, top_n: int | None = None, return_documents: bool = False,
               **params: Any) -> Reranked:
        documents = check_texts(documents, "documents", allow_one=False)
        if not isinstance(query, str) or not query:
            raise InvalidRequest("query must be a non-empty string.")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            raise InvalidRequest(f"top_n must be a positive whole number, got {top_n!r}.")
        found = self.score(query, documents, **self.refuse_unsupported(params, "rerank"))
        if len(found.scores) != len(documents):
            raise ModelError(f"{type(self).__name__}.score returned {len(found.scores)} scores "
                             f"for {len(documents)} documents")
        hits = [RerankHit(i, s, documents[i] if return_documents else None) for i, s in ranked(found.scores)]
        return Reranked(hits[:top_n] if top_n is not None else hits, found.prompt_tokens)

    def score(self, query: str, documents: list[str], **params: Any) -> Scores:
        raise NotImplementedError(f"{type(self).__name__} does not implement score()")


RERANK = ModelType(
    name="rerank",
    schema=RerankRegistration,
    abilities=("rerank",),
    routes=("/v1/rerank",),
)
