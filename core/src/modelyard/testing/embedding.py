"""The embedding and rerank suites, in-process. Give a class-scoped `engine` fixture: a loaded
`EmbeddingEngine` (or `RerankEngine`)."""

from __future__ import annotations

import math
from typing import Any

from modelyard.arrays import Array, as_array
from modelyard.errors import InvalidRequest


def rows(vectors: Any) -> list[list[float]]:
    """An engine's vectors (numpy, torch, Array or lists) as lists of floats."""
    found = vectors if isinstance(vectors, Array) else as_array(vectors)
    return found.tolist() if found is not None else [list(map(float, r)) for r in vectors]


class EmbeddingEngineSuite:
    TEXTS = ["the cat sat on the mat", "a dog ran in the park", "stock prices fell sharply"]

    def test_one_vector_per_input_all_of_one_dimension(self, engine):
        found = engine.embed(self.TEXTS)
        vectors = rows(found.vectors)
        assert len(vectors) == len(self.TEXTS)
        assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 0
        assert all(math.isfinite(x) for v in vectors for x in v)
        dimensions = getattr(engine.registration, "dimensions", None)
        if dimensions:
            assert len(vectors[0]) == dimensions
        assert found.prompt_tokens > 0

    def test_a_batch_equals_its_inputs_one_by_one(self, engine):
        batch = rows(engine.embed(self.TEXTS).vectors)
        single = [rows(engine.embed(text).vectors)[0] for text in self.TEXTS]
        for b, s in zip(batch, single, strict=True):
            assert all(math.isclose(x, y, rel_tol=1e-3, abs_tol=1e-4) for x, y in zip(b, s, strict=True))

    def test_bad_input_is_refused(self, engine):
        import pytest

        for bad in ([], [1, 2], None):
            with pytest.raises(InvalidRequest):
                engine.embed(bad)


class RerankEngineSuite:
    QUERY = "red sky at night"
    DOCUMENTS = ["a red sky at night", "the stock market", "night falls", "blue sea"]

    def test_results_are_ranked_best_first_with_every_document(self, engine):
        found = engine.rerank(self.DOCUMENTS, self.QUERY)
        scores = [hit.relevance_score for hit in found.results]
        assert scores == sorted(scores, reverse=True)
        assert sorted(hit.index for hit in found.results) == list(range(len(self.DOCUMENTS)))
        assert found.results[0].index == 0  # the document that is the query, nearly word for word

    def test_top_n_and_return_documents(self, engine):
        found = engine.rerank(self.DOCUMENTS, self.QUERY, top_n=2, return_documents=True)
        assert len(found.results) == 2
        assert all(hit.document == self.DOCUMENTS[hit.index] for hit in found.results)

    def test_bad_input_is_refused(self, engine):
        import pytest

        with pytest.raises(InvalidRequest):
            engine.rerank([], self.QUERY)
        with pytest.raises(InvalidRequest):
            engine.rerank(self.DOCUMENTS, "")
        with pytest.raises(InvalidRequest):
            engine.rerank(self.DOCUMENTS, self.QUERY, top_n=0)
