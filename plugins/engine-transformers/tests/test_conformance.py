"""The transformers engine against modelyard's LLM suites, on the tests' tiny Llama: in-process,
and end to end through a real server."""

import sys
from pathlib import Path

import pytest

from modelyard.testing.llm import LLMEngineSuite, LLMServerSuite
from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

# the tiny model's whole context (512): filling it takes long enough to see a client leave early
REGISTRATION = {"model_name": "tiny", "context_length": 512, "model_ability": ["generate", "chat"],
                "model_specs": [{"model_format": "pytorch", "quantization": "none"}]}


def registration_at(path):
    return {**REGISTRATION, "model_specs": [{**REGISTRATION["model_specs"][0], "model_uri": path}]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama-kit")))


class TestTransformersLLM(LLMEngineSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, model_dir):
        from modelyard_engine_transformers.llm import TransformersLLM

        from modelyard.types.llm import LLMRegistration

        registration = LLMRegistration.model_validate(registration_at(model_dir))
        engine = TransformersLLM("tiny", registration, registration.model_specs[0], model_dir)
        engine.load()
        return engine


class TestTransformersLLMServed(LLMServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, model_dir, tmp_path_factory):
        server = Server(tmp_path_factory.mktemp("kit-server"), env={
            "MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}).start()
        try:
            yield server, server.launch("LLM", registration_at(model_dir), engine="transformers")
        finally:
            server.stop()
