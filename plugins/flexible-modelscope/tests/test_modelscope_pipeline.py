"""The `modelscope` flexible launcher through a real server, with Xinference's documented JSON file
(model_uri changed to a tiny StructBERT zero-shot model built here, and its unreachable index_url
dropped), driven by HTTP, the modelyard client, the CLI and xinference-client.

The model's env is a real one: ModelScope with its framework extras and the transformers 4 the
registration pins, over a server on transformers 5. ModelScope's StructBERT pipeline does not build
under transformers 5, so every answer here shows the env at work. The env is built once per machine
(`shared_venv_dir`)."""

import json
import sys
from pathlib import Path

import pytest
from xinference_client import RESTfulClient

from modelyard.client import Client
from modelyard.testing.server import Server, planned_env_python, shared_venv_dir

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
sys.path[:0] = [str(FIXTURES / "embedding"), str(FIXTURES / "llm")]
import tiny_llama  # noqa: E402
import tiny_st  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
NAME = "nlp_structbert_zero-shot-classification_chinese-base"
LABELS = ["家居", "旅游", "科技", "军事", "游戏", "故事"]
SENTENCE = "世界那么大，我想去看看"
ENV_BUILD_SECONDS = 900  # a cold machine downloads ModelScope, datasets and transformers 4 once


def documented(model_uri, name=NAME, launcher_args='{"task": "zero-shot-classification"}'):
    """Xinference's documentation's JSON file for its ModelScope example, without its index_url."""
    return {"model_name": name, "model_id": None, "model_revision": None, "model_hub": "huggingface",
            "model_description": "This is a model description.", "model_uri": model_uri,
            "launcher": "xinference.model.flexible.launchers.modelscope", "launcher_args": launcher_args,
            "virtualenv": {"packages": ["transformers==4.50.3", "#system_numpy#"], "inherit_pip_config": True,
                           "index_url": None, "extra_index_url": None, "find_links": None, "trusted_host": None,
                           "no_build_isolation": None},
            "is_builtin": False}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("modelscope")
    return {"zero_shot": tiny_st.build_modelscope_zero_shot(str(root / "zs")),
            "llm": tiny_llama.build(str(root / "llm"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("modelscope-home"),
                    env={**ENV, "MODELYARD_VENV_DIR": shared_venv_dir()}).start()
    yield server
    server.stop()


def launch(server, name, uid=None, **options):
    with server.http() as http:
        return http.post("/v1/models", json={"model_name": name, "model_type": "flexible",
                                             "model_uid": uid or name, **options},
                         timeout=ENV_BUILD_SECONDS)


def infer(server, uid, *args, **kwargs):
    with server.http() as http:
        return http.post("/v1/flexible/infers", json={"model": uid, "args": list(args), **kwargs}, timeout=120)


def assert_zero_shot(answer):
    assert set(answer) == {"labels", "scores"}, answer
    assert sorted(answer["labels"]) == sorted(LABELS) and len(answer["scores"]) == len(LABELS)
    assert all(isinstance(s, float) for s in answer["scores"]) and abs(sum(answer["scores"]) - 1) < 1e-4


@pytest.fixture(scope="module")
def launched(server, models):
    registration = documented(models["zero_shot"])
    server.register("flexible", registration)
    built_before = planned_env_python(registration["virtualenv"], "modelscope").exists()
    response = launch(server, NAME)
    assert response.status_code == 200, response.text
    with server.http() as http:
        stages = [step["stage"] for step in http.get(f"/v1/models/{NAME}/progress").json()["history"]]
    # the env's stages show as for any model, when this launch built it (a later run reuses it)
    assert ("installing" in stages) is not built_before and stages[-1] == "ready", stages
    return NAME


def test_the_documented_example_by_http_client_and_xinference_client(server, launched):
    response = infer(server, launched, SENTENCE, candidate_labels=LABELS)  # the documentation's curl body
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_zero_shot(answer)
    with Client(server.url) as client:
        assert client.get_model(launched).infer(SENTENCE, candidate_labels=LABELS) == answer
    assert RESTfulClient(server.url).get_model(launched).infer(SENTENCE, candidate_labels=LABELS) == answer


def test_its_worker_runs_transformers_4_beside_an_llm_on_the_servers_5(server, models, launched):
    import transformers

    assert transformers.__version__.startswith("5.")  # the server's environment, which the test shares
    spec = {"version": 2, "context_length": 256, "model_name": "tiny-llm", "model_lang": ["en"],
            "model_ability": ["generate", "chat"], "model_family": "tiny",
            "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_001", "quantization": "none",
                             "model_uri": f"file://{models['llm']}"}]}
    llm = server.launch("LLM", spec, engine="transformers")
    with Client(server.url) as client:
        pipeline_model, llm_model = client.describe_model(launched), client.describe_model(llm)
        assert pipeline_model["virtualenv"] and pipeline_model["packages"]["transformers"] == "4.50.3"
        assert pipeline_model["packages"]["modelscope"]
        assert llm_model["virtualenv"] is None and llm_model["packages"]["transformers"] == transformers.__version__
        answer = client.get_model(llm).generate("Hello", {"max_tokens": 4})
        assert answer["choices"][0]["text"]
        client.terminate_model(llm)
    assert_zero_shot(infer(server, launched, SENTENCE, candidate_labels=LABELS).json())


def test_registered_and_launched_by_the_cli(server, models, launched, tmp_path):
    path = tmp_path / "modelscope.json"
    path.write_text(json.dumps(documented(models["zero_shot"], "ms-by-cli")))
    server.cli("register", "-t", "flexible", "-f", str(path))
    launched_line = server.cli("launch", "-n", "ms-by-cli", "--model-type", "flexible", "-u", "ms-by-cli").stdout
    assert "ms-by-cli" in launched_line
    out = server.cli("infer", "-u", "ms-by-cli", SENTENCE, "--kwargs", json.dumps({"candidate_labels": LABELS})).stdout
    assert_zero_shot(json.loads(out))
    server.cli("terminate", "-u", "ms-by-cli")


def test_bad_launches_and_calls_are_4xx_that_say_what_is_wrong(server, models, launched):
    for name, uri, args, words in (
            ("ms-no-task", models["zero_shot"], "{}", "needs a task"),
            ("ms-bad-task", models["zero_shot"], '{"task": "no-such-task"}', "no-such-task"),
            ("ms-no-dir", "/no/such/model", '{"task": "zero-shot-classification"}', "/no/such/model")):
        server.register("flexible", documented(uri, name, args))
        response = launch(server, name)
        assert 400 <= response.status_code < 500 and words in response.json()["detail"], response.text
    for kwargs, words in (({}, "at least one label"), ({"candidate_labels": LABELS, "args": [42]}, "str")):
        body = {"args": [SENTENCE], **kwargs}
        with server.http() as http:
            response = http.post("/v1/flexible/infers", json={"model": launched, **body})
        assert response.status_code == 400 and words in response.json()["detail"], response.text
    assert_zero_shot(infer(server, launched, SENTENCE, candidate_labels=LABELS).json())  # still usable


def test_an_env_that_cannot_be_installed_is_a_400_with_the_installers_lines(server, models):
    server.register("flexible", documented(models["zero_shot"], "ms-unresolvable"))
    response = launch(server, "ms-unresolvable", virtual_env_packages=["transformers==4.0.0.404"])
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert "transformers==4.0.0.404" in detail and "uv exit code" in detail


def test_the_plugin_is_listed(server):
    table = server.cli("plugins").stdout
    assert "modelyard-flexible-modelscope" in table and "modelscope" in table
