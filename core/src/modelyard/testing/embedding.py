"""The embedding and rerank suites: in-process (`EmbeddingEngineSuite`, `RerankEngineSuite`: a
class-scoped `engine` fixture, a loaded `EmbeddingEngine` or `RerankEngine`) and end to end
through a real server (`EmbeddingServerSuite`, `RerankServerSuite`: a class-scoped `served`
fixture, `(server, uid)` as in `modelyard.testing.llm`)."""

from __future__ import annotations

import base64
import concurrent.futures
import math
import struct
from typing import Any

from modelyard.arrays import Array, as_array
from modelyard.errors import InvalidRequest
from modelyard.testing.driving import settle


def rows(vectors: Any) -> list[list[float]]:
    """An engine's vectors (numpy, torch, Array or lists) as lists of floats."""
    found = vectors if isinstance(vectors, Array) else as_array(vectors)
    return found.tolist() if found is not None else [list(map(float, r)) for r in vectors]


def close(a: list[float], b: list[float], tolerance: float = 1e-4) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-3, abs_tol=tolerance)
                                    for x, y in zip(a, b, strict=False))


def sentences(count: int) -> list[str]:
    """Texts of different lengths, each its own."""
    words = "the quick brown fox jumps over a lazy dog while rain falls on the quiet town".split()
    return [" ".join(words[: 1 + i % len(words)]) + f" number {i}" for i in range(count)]


class EmbeddingEngineSuite:
    TEXTS = ["the cat sat on the mat", "a dog ran in the park", "stock prices fell sharply"]

    def embed(self, engine: Any, input: Any, **params: Any) -> Any:
        return settle(engine.embed(input, **params))

    def test_one_vector_per_input_all_of_one_dimension(self, engine):
        found = self.embed(engine, self.TEXTS)
        vectors = rows(found.vectors)
        assert len(vectors) == len(self.TEXTS)
        assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 0
        assert all(math.isfinite(x) for v in vectors for x in v)
        dimensions = getattr(engine.registration, "dimensions", None)
        if dimensions:
            assert len(vectors[0]) == dimensions
        assert found.prompt_tokens > 0

    def test_a_batch_equals_its_inputs_one_by_one(self, engine):
        batch = rows(self.embed(engine, self.TEXTS).vectors)
        single = [rows(self.embed(engine, text).vectors)[0] for text in self.TEXTS]
        for b, s in zip(batch, single, strict=True):
            assert close(b, s)

    def test_concurrent_requests_each_get_their_own_rows(self, engine):
        texts = sentences(32)
        alone = [rows(self.embed(engine, text).vectors)[0] for text in texts]
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            together = list(pool.map(lambda t: rows(self.embed(engine, [t, t]).vectors), texts))
        for mine, expected in zip(together, alone, strict=True):
            assert len(mine) == 2 and close(mine[0], expected) and close(mine[1], expected)

    def test_bad_input_is_refused(self, engine):
        import pytest

        for bad in ([], None, [""], [["x"]], [1.5], {"text": "x"}):
            with pytest.raises(InvalidRequest):
                self.embed(engine, bad)
        with pytest.raises(InvalidRequest, match="dimensions"):
            self.embed(engine, "x", dimensions=0)


class RerankEngineSuite:
    QUERY = "red sky at night"
    DOCUMENTS = ["a red sky at night", "the stock market", "night falls", "blue sea"]
    #: whether the model's scores mean something (a tiny random model's do not)
    SEMANTIC = True

    def rerank(self, engine: Any, documents: Any, query: Any, **params: Any) -> Any:
        return settle(engine.rerank(documents, query, **params))

    def test_results_are_ranked_best_first_with_every_document(self, engine):
        found = self.rerank(engine, self.DOCUMENTS, self.QUERY)
        scores = [hit.relevance_score for hit in found.results]
        assert scores == sorted(scores, reverse=True)
        assert sorted(hit.index for hit in found.results) == list(range(len(self.DOCUMENTS)))
        if self.SEMANTIC:
            assert found.results[0].index == 0  # the document that is the query, nearly word for word

    def test_top_n_and_return_documents(self, engine):
        found = self.rerank(engine, self.DOCUMENTS, self.QUERY, top_n=2, return_documents=True)
        assert len(found.results) == 2
        assert all(hit.document == self.DOCUMENTS[hit.index] for hit in found.results)

    def test_concurrent_requests_each_get_their_own_scores(self, engine):
        queries = sentences(16)
        alone = [self.rerank(engine, self.DOCUMENTS, q).results for q in queries]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            together = list(pool.map(lambda q: self.rerank(engine, self.DOCUMENTS, q).results, queries))
        for mine, expected in zip(together, alone, strict=True):
            assert [h.index for h in mine] == [h.index for h in expected]
            assert close([h.relevance_score for h in mine], [h.relevance_score for h in expected])

    def test_bad_input_is_refused(self, engine):
        import pytest

        for documents, query, params in (([], self.QUERY, {}), (self.DOCUMENTS, "", {}),
                                          (self.DOCUMENTS, self.QUERY, {"top_n": 0}), ("one", self.QUERY, {}),
                                          ([1, 2], self.QUERY, {})):
            with pytest.raises(InvalidRequest):
                self.rerank(engine, documents, query, **params)


# -- end to end ------------------------------------------------------------------------------

def _post(served: Any, path: str, **body: Any) -> Any:
    server, uid = served
    with server.http() as http:
        return http.post(path, json={"model": uid, **body}, timeout=120)


def _floats(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class EmbeddingServerSuite:
    TEXTS = ["the cat sat on the mat", "a dog ran in the park", "stock prices fell sharply"]

    def embeddings(self, served, input: Any, **body: Any) -> dict[str, Any]:
        response = _post(served, "/v1/embeddings", input=input, **body)
        assert response.status_code == 200, response.text
        return response.json()

    def test_openai_shape_float_and_base64_agree(self, served):
        found = self.embeddings(served, self.TEXTS)
        assert found["object"] == "list" and found["model"] == served[1]
        assert [d["index"] for d in found["data"]] == [0, 1, 2]
        assert all(d["object"] == "embedding" for d in found["data"])
        assert found["usage"]["prompt_tokens"] > 0
        assert found["usage"]["total_tokens"] == found["usage"]["prompt_tokens"]
        packed = self.embeddings(served, self.TEXTS, encoding_format="base64")
        for a, b in zip(found["data"], packed["data"], strict=True):
            assert close(a["embedding"], _floats(b["embedding"]), 1e-6)

    def test_concurrent_requests_each_get_their_own_rows(self, served):
        texts = sentences(32)
        alone = [self.embeddings(served, t)["data"][0]["embedding"] for t in texts]
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            together = list(pool.map(lambda t: self.embeddings(served, t)["data"][0]["embedding"], texts))
        assert all(close(a, b) for a, b in zip(alone, together, strict=True))

    def test_bad_input_is_a_400_that_names_it(self, served):
        for body, word in (({"input": []}, "input"), ({"input": [""]}, "empty"), ({"input": [["x"]]}, "input[0]"),
                           ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
                           ({"input": "x", "dimensions": 0}, "dimensions")):
            response = _post(served, "/v1/embeddings", **body)
            assert response.status_code == 400 and word in response.json()["detail"], (body, response.text)
        response = _post(served, "/v1/rerank", query="q", documents=["d"])
        assert response.status_code == 400 and "rerank" in response.json()["detail"], response.text


class RerankServerSuite:
    QUERY = "red sky at night"
    DOCUMENTS = ["a red sky at night", "the stock market", "night falls", "blue sea"]

    def rerank(self, served, **body: Any) -> dict[str, Any]:
        response = _post(served, "/v1/rerank", query=self.QUERY, documents=self.DOCUMENTS, **body)
        assert response.status_code == 200, response.text
        return response.json()

    def test_results_sorted_with_indexes_documents_and_tokens(self, served):
        found = self.rerank(served, return_documents=True, return_len=True)
        scores = [r["relevance_score"] for r in found["results"]]
        assert scores == sorted(scores, reverse=True)
        assert sorted(r["index"] for r in found["results"]) == list(range(len(self.DOCUMENTS)))
        assert all(r["document"]["text"] == self.DOCUMENTS[r["index"]] for r in found["results"])
        assert found["meta"]["tokens"]["input_tokens"] > 0
        top = self.rerank(served, top_n=2)
        assert [r["index"] for r in top["results"]] == [r["index"] for r in found["results"][:2]]
        assert all(r["document"] is None for r in top["results"])

    def test_what_xinference_client_always_sends_is_accepted(self, served):
        found = self.rerank(served, top_n=None, max_chunks_per_doc=None, return_documents=None, return_len=None,
                            kwargs="{}")
        assert len(found["results"]) == len(self.DOCUMENTS)

    def test_bad_input_is_a_400_that_names_it(self, served):
        for body, word in (({"top_n": 0}, "top_n"), ({"documents": []}, "documents"), ({"query": ""}, "query"),
                           ({"kwargs": "{not json"}, "kwargs"), ({"max_chunks_per_doc": 2}, "max_chunks_per_doc")):
            response = _post(served, "/v1/rerank", **{"query": self.QUERY, "documents": self.DOCUMENTS, **body})
            assert response.status_code == 400 and word in response.json()["detail"], (body, response.text)
        response = _post(served, "/v1/embeddings", input="x")
        assert response.status_code == 400 and "embed" in response.json()["detail"], response.text
