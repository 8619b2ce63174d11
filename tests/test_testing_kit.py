"""modelyard.testing's embedding and rerank suites, run against the contract fixture engines (the kit
is the unit here); engine plugins run them against their real engines."""

import sys

import pytest

from helpers import TESTS
from modelyard.testing.embedding import EmbeddingEngineSuite, RerankEngineSuite
from modelyard.types.embedding import EmbeddingRegistration
from modelyard.types.rerank import RerankRegistration

sys.path.insert(0, str(TESTS / "fixtures" / "contract"))
import contract_engines  # noqa: E402

SPEC = {"model_format": "pytorch", "quantization": "none", "model_uri": "/unused"}


class TestFixtureEmbedding(EmbeddingEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls):
        registration = EmbeddingRegistration.model_validate({"model_name": "e", "dimensions": 4,
                                                             "model_specs": [SPEC]})
        engine = contract_engines.NumpyEmbedding("e", registration, registration.model_specs[0], "/unused")
        engine.load()
        return engine


class TestFixtureRerank(RerankEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls):
        registration = RerankRegistration.model_validate({"model_name": "r", "model_specs": [SPEC]})
        engine = contract_engines.OverlapRerank("r", registration, registration.model_specs[0], "/unused")
        engine.load()
        return engine


class WrongDimensions(contract_engines.NumpyEmbedding):
    def embed_batch(self, texts, **params):
        found = super().embed_batch(texts, **params)
        found.vectors = found.vectors[:, :3]
        return found


def test_the_suite_fails_an_engine_that_breaks_the_contract():
    registration = EmbeddingRegistration.model_validate({"model_name": "e", "dimensions": 4, "model_specs": [SPEC]})
    engine = WrongDimensions("e", registration, registration.model_specs[0], "/unused")
    engine.load()
    with pytest.raises(AssertionError):
        EmbeddingEngineSuite().test_one_vector_per_input_all_of_one_dimension(engine)
