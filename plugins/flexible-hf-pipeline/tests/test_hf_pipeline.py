"""The `transformers` flexible launcher through a real server, with Xinference's documented JSON
file (only model_uri changed to a tiny zero-shot model built here), driven by HTTP, the modelyard
client, the CLI and xinference-client."""

import base64
import io
import json
import sys
from pathlib import Path

import pytest
from xinference_client import RESTfulClient

from modelyard.client import Client
from modelyard.testing.server import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "embedding"))
import tiny_st  # noqa: E402

ENV = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
LABELS = ["travel", "cooking", "dancing"]


def documented(model_uri, name="roberta-large-mnli", task="zero-shot-classification"):
    """Xinference's documentation's JSON file for its Hugging Face pipeline example."""
    return {"model_name": name, "model_id": None, "model_revision": None, "model_hub": "huggingface",
            "model_description": "roberta-large-mnli is the RoBERTa large model fine-tuned on MNLI.",
            "model_uri": model_uri, "launcher": "xinference.model.flexible.launchers.transformers",
            "launcher_args": json.dumps({"task": task}),
            "virtualenv": {"packages": [], "inherit_pip_config": True, "index_url": None, "extra_index_url": None,
                           "find_links": None, "trusted_host": None, "no_build_isolation": None},
            "is_builtin": False}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {"zero_shot": tiny_st.build_sequence_classifier(str(root / "zs"), ["contradiction", "neutral",
                                                                              "entailment"]),
            "sentiment": tiny_st.build_sequence_classifier(str(root / "tc"), ["NEGATIVE", "POSITIVE"]),
            "image": tiny_st.build_image_classifier(str(root / "img"))}


@pytest.fixture(scope="module")
def server(tmp_path_factory, models):
    server = Server(tmp_path_factory.mktemp("hf-pipeline-home"), env=ENV).start()
    with server.http() as http:
        spec = json.dumps(documented(models["zero_shot"]))
        assert http.post("/v1/model_registrations/flexible", json={"model": spec}).status_code == 200
    yield server
    server.stop()


def launch(server, name):
    with server.http() as http:
        response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": name},
                             timeout=300)
        assert response.status_code == 200, response.text


def infer(server, uid, *args, **kwargs):
    with server.http() as http:
        return http.post("/v1/flexible/infers", json={"model": uid, "args": list(args), **kwargs})


def test_the_documented_zero_shot_example_by_http_client_and_xinference_client(server):
    launch(server, "roberta-large-mnli")
    answer = infer(server, "roberta-large-mnli", "one day I will see the world", candidate_labels=LABELS).json()
    assert set(answer) == {"sequence", "labels", "scores"} and sorted(answer["labels"]) == sorted(LABELS)
    assert abs(sum(answer["scores"]) - 1) < 1e-4
    with Client(server.url) as client:
        again = client.get_model("roberta-large-mnli").infer("one day I will see the world", candidate_labels=LABELS)
    assert again == answer
    handle = RESTfulClient(server.url).get_model("roberta-large-mnli")
    assert handle.infer("one day I will see the world", candidate_labels=LABELS) == answer


def test_the_documented_file_registered_and_launched_by_the_cli(server, models, tmp_path):
    path = tmp_path / "roberta-large-mnli.json"
    path.write_text(json.dumps(documented(models["zero_shot"], "roberta-by-cli")))
    server.cli("register", "--model-type", "flexible", "--file", str(path))
    server.cli("launch", "--model-name", "roberta-by-cli", "--model-type", "flexible")
    # the documentation's curl body passes the labels positionally
    out = json.loads(server.cli("infer", "-u", "roberta-by-cli", "one day I will see the world",
                                json.dumps(LABELS)).stdout)
    assert set(out) == {"sequence", "labels", "scores"} and sorted(out["labels"]) == sorted(LABELS)
    assert abs(sum(out["scores"]) - 1) < 1e-4
    server.cli("terminate", "-u", "roberta-by-cli")


def test_registered_by_the_cli_and_a_second_task(server, models, tmp_path):
    path = tmp_path / "sentiment.json"
    path.write_text(json.dumps(documented(models["sentiment"], "tiny-sentiment", "text-classification")))
    server.cli("register", "-t", "flexible", "-f", str(path))
    server.cli("launch", "-n", "tiny-sentiment", "-t", "flexible", "-u", "tiny-sentiment")
    answer = infer(server, "tiny-sentiment", "what a good day").json()
    assert len(answer) == 1 and answer[0]["label"] in ("NEGATIVE", "POSITIVE") and 0 <= answer[0]["score"] <= 1
    out = json.loads(server.cli("infer", "-u", "tiny-sentiment", "what a good day").stdout)
    assert out[0]["label"] == answer[0]["label"]


def test_an_image_task_takes_a_base64_image_or_a_data_url(server, models):
    from PIL import Image

    spec = documented(models["image"], "tiny-vit", "image-classification")
    with server.http() as http:
        assert http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).status_code == 200
    launch(server, "tiny-vit")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buffer, format="JPEG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    response = infer(server, "tiny-vit", encoded)
    assert response.status_code == 200, response.text
    plain = response.json()
    assert sorted(r["label"] for r in plain) == ["cat", "dog"] and abs(sum(r["score"] for r in plain) - 1) < 1e-4
    as_url = infer(server, "tiny-vit", f"data:image/jpeg;base64,{encoded}").json()
    assert as_url == plain
    for bad, words in (("aGVsbG8gd29ybGQ=", "not an image"), ("https://example.com/cat.jpg", "does not fetch URLs"),
                       ("/etc/passwd", "outside the folders"), ("%%%", "neither a data URL nor valid base64")):
        response = infer(server, "tiny-vit", bad)
        assert response.status_code == 400 and words in response.json()["detail"], response.text
    assert infer(server, "tiny-vit", encoded).json() == plain  # still usable


def test_bad_launches_and_calls_are_4xx_that_say_what_is_wrong(server, models):
    with server.http() as http:
        for name, uri, task, words in (("no-task", models["zero_shot"], "no-such-task", "no-such-task"),
                                       ("no-dir", "/no/such/model", "zero-shot-classification", "/no/such/model")):
            spec = json.dumps(documented(uri, name, task))
            assert http.post("/v1/model_registrations/flexible", json={"model": spec}).status_code == 200
            response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}, timeout=300)
            assert 400 <= response.status_code < 500 and words in response.json()["detail"], response.text
    response = infer(server, "roberta-large-mnli", "one day I will see the world", no_such_keyword=1)
    assert 400 <= response.status_code < 500, response.text
    answer = infer(server, "roberta-large-mnli", "one day I will see the world", candidate_labels=LABELS)
    assert answer.status_code == 200  # the model stays usable


def test_the_plugin_is_listed(server):
    table = server.cli("plugins").stdout
    assert "modelyard-flexible-hf-pipeline" in table and "transformers" in table
