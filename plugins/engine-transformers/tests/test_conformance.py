"""The transformers engine against modelyard's LLM suite, in-process, on the tests' tiny Llama."""

import sys
from pathlib import Path

import pytest

from modelyard.testing.llm import LLMEngineSuite

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_llama  # noqa: E402


class TestTransformersLLM(LLMEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, tmp_path_factory):
        from modelyard_engine_transformers.llm import TransformersLLM

        from modelyard.types.llm import LLMRegistration

        path = tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama-kit")))
        registration = LLMRegistration.model_validate({
            "model_name": "tiny", "context_length": 256, "model_ability": ["generate", "chat"],
            "model_specs": [{"model_format": "pytorch", "quantization": "none", "model_uri": path}]})
        engine = TransformersLLM("tiny", registration, registration.model_specs[0], path)
        engine.load()
        return engine
