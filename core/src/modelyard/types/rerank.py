"""Rerank: score documents against a query (/v1/rerank).

An engine subclasses `RerankEngine` and implements `score_pairs(pairs) -> Scores` (one score per
(query, document) pair: concurrent requests' pairs share a call, see `BatchingEngine`) or, simpler,
`score(query, documents) -> Scores`. The base checks the input, gathers the pairs, ranks best
first, applies `top_n` and `return_documents`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidRequest, ModelError
from modelyard.types import FlatRegistration, ModelType, StrOrList
from modelyard.types.engine import BatchingEngine, check_texts, ranked


class RerankRegistration(FlatRegistration):
    version: int | None = None
    type: str = "unknown"
    max_tokens: int | None = None
    language: StrOrList = []
    flat_format = "pytorch"


@dataclass
class Scores:
    """One score per document (or pair), and the tokens read: in all, and per pair where known."""

    scores: list[float]
    prompt_tokens: int
    row_tokens: list[int] | None = None


@dataclass
class RerankHit:
    index: int
    relevance_score: float
    document: str | None = None


@dataclass
class Reranked:
    results: list[RerankHit] = field(default_factory=list)
    prompt_tokens: int = 0


class RerankEngine(BatchingEngine):
    async def rerank(self, documents: list[str], query: str, top_n: int | None = None,
                     return_documents: bool = False, **params: Any) -> Reranked:
        if isinstance(documents, list):  # Cohere's and Jina's clients may send {"text": ...} objects
            documents = [d["text"] if isinstance(d, dict) and isinstance(d.get("text"), str) else d
                         for d in documents]
        documents = check_texts(documents, "documents", allow_one=False)
        if not isinstance(query, str) or not query:
            raise InvalidRequest("query must be a non-empty string.")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            raise InvalidRequest(f"top_n must be a positive whole number, got {top_n!r}.")
        params = self.refuse_unsupported(params, "rerank")
        found = await self.gathered([(query, document) for document in documents], params)
        hits = [RerankHit(i, s, documents[i] if return_documents else None)
                for i, s in ranked(score for score, _ in found)]
        return Reranked(hits[:top_n] if top_n is not None else hits, sum(tokens for _, tokens in found))

    def run_rows(self, rows: list[tuple[str, str]], params: dict[str, Any]) -> list[tuple[float, int]]:
        found = self.score_pairs(rows, **params)
        if len(found.scores) != len(rows):
            raise ModelError(f"{type(self).__name__} returned {len(found.scores)} scores for {len(rows)} documents")
        scores = [float(score) for score in found.scores]
        if not all(math.isfinite(score) for score in scores):
            raise ModelError(f"{type(self).__name__} returned scores that are not finite numbers (NaN or infinity)")
        tokens = found.row_tokens
        if tokens is None or len(tokens) != len(rows):  # shared out evenly: exact for one request alone
            tokens = [found.prompt_tokens // len(rows)] * len(rows)
            tokens[-1] += found.prompt_tokens - sum(tokens)
        return [(score, int(n)) for score, n in zip(scores, tokens, strict=True)]

    # -- what an engine implements: score_pairs, or score ----------------------------------

    def score_pairs(self, pairs: list[tuple[str, str]], **params: Any) -> Scores:
        """One score per (query, document) pair; by default, `score` once per query."""
        scores: list[float] = [0.0] * len(pairs)
        row_tokens: list[int] | None = [0] * len(pairs)
        tokens = 0
        by_query: dict[str, list[int]] = {}
        for i, (query, _document) in enumerate(pairs):
            by_query.setdefault(query, []).append(i)
        for query, indexes in by_query.items():
            found = self.score(query, [pairs[i][1] for i in indexes], **params)
            if len(found.scores) != len(indexes):
                raise ModelError(f"{type(self).__name__}.score returned {len(found.scores)} scores "
                                 f"for {len(indexes)} documents")
            for i, score in zip(indexes, found.scores, strict=True):
                scores[i] = score
            tokens += found.prompt_tokens
            if row_tokens is not None and found.row_tokens is not None and len(found.row_tokens) == len(indexes):
                for i, n in zip(indexes, found.row_tokens, strict=True):
                    row_tokens[i] = n
            else:
                row_tokens = None
        return Scores(scores, tokens, row_tokens)

    def score(self, query: str, documents: list[str], **params: Any) -> Scores:
        raise NotImplementedError(f"{type(self).__name__} implements neither score_pairs() nor score()")


RERANK = ModelType(
    name="rerank",
    schema=RerankRegistration,
    abilities=("rerank",),
    routes=("/v1/rerank",),
)
