"""modelyard-babble's own tests: modelyard.testing's LLM suites, in-process and through a real server."""

import json

import pytest

from modelyard.testing.llm import LLMEngineSuite, LLMServerSuite
from modelyard.testing.server import Server

WORDS = ("the a cat dog sat ran on under mat tree quickly slowly and then big small red green sun moon "
         "river stone bird sang flew over hill far near old young happy sad").split()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("babble-model")
    (path / "babble.json").write_text(json.dumps({"vocab": WORDS, "seed": 11}))
    return str(path)


def registration(path):
    return {"model_name": "babble-tiny", "context_length": 128, "model_ability": ["generate", "chat"],
            "model_specs": [{"model_format": "babble", "model_uri": path}]}


class TestBabble(LLMEngineSuite):
    PROMPT = "the cat sat on"

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, model_dir):
        from modelyard_babble.engine import BabbleLLM

        from modelyard.types.llm import LLMRegistration

        reg = LLMRegistration.model_validate(registration(model_dir))
        engine = BabbleLLM("babble-tiny", reg, reg.model_specs[0], model_dir)
        engine.load()
        return engine


class TestBabbleServed(LLMServerSuite):
    PROMPT = "the cat sat on"

    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, model_dir, tmp_path_factory):
        server = Server(tmp_path_factory.mktemp("babble-home")).start()
        try:
            # 20 ms a word: its context takes seconds to fill, so a client that leaves is seen leaving
            yield server, server.launch("LLM", registration(model_dir), engine="babble", delay_ms=20)
        finally:
            server.stop()

    def test_several_choices_with_logprobs_in_openai_shape(self, served):
        response = self.post(served, "/v1/chat/completions", messages=self.MESSAGES, n=2, logprobs=True,
                             top_logprobs=2, max_tokens=3, temperature=0)
        assert response.status_code == 200, response.text
        choices = response.json()["choices"]
        assert [c["index"] for c in choices] == [0, 1]
        content = choices[0]["logprobs"]["content"]
        assert "".join(e["token"] for e in content) == choices[0]["message"]["content"]
        assert all(len(e["top_logprobs"]) == 2 for e in content)
