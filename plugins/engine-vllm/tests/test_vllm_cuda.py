"""The vLLM engine on its CUDA build (PyPI's `vllm`), where an NVIDIA GPU is present: the CPU
file's checks, through a server whose model is placed on GPU 0 with `gpu_idx`. Elsewhere it skips,
for that reason only."""

import sys
from pathlib import Path

import pytest
from modelyard_engine_vllm import machine

from modelyard.testing.llm import LLMServerSuite
from modelyard.testing.server import Server, shared_venv_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_vllm_cpu import (  # noqa: E402,F401  (collected here with this module's fixtures)
    ENV_BUILD_SECONDS,
    registration,
    test_a_json_schema_answer_parses_against_its_schema,
    test_several_choices_and_logprobs,
    test_the_greedy_text_equals_the_transformers_engines_on_the_same_weights,
    test_the_openai_sdk_gets_the_same_text_streamed_and_whole,
    test_xinference_clients_chat_and_generate,
    weights,
)

pytestmark = pytest.mark.skipif(not machine.has_gpu(), reason="needs an NVIDIA GPU (vLLM's CUDA build)")

ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MODELYARD_VLLM_BUILD": "cuda"}
OPTIONS = {"dtype": "float32", "max_model_len": 512, "gpu_memory_utilization": 0.3, "seed": 0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights):  # noqa: F811
    server = Server(tmp_path_factory.mktemp("vllm-cuda-home"),
                    env={**ENV, "MODELYARD_VENV_DIR": shared_venv_dir()}).start()
    try:  # a launch that fails must not leave the server running
        server.launch("LLM", registration(weights), engine="vllm", timeout=ENV_BUILD_SECONDS, gpu_idx=[0], **OPTIONS)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oai(server):
    import openai

    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0)


class TestVllmCudaServed(LLMServerSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, server):
        yield server, "tiny-vllm"


def test_gpu_idx_places_the_worker_on_that_gpu(server):
    with server.http() as http:
        pid = http.get("/v1/models/tiny-vllm").json()["pid"]
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert environ["CUDA_VISIBLE_DEVICES"] == "0"
