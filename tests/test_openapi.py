"""The published OpenAPI document tells the truth: schemathesis fuzzes every non-destructive
operation of a live server (an echo flexible model and the tiny LLM launched) and finds no server
error, no undeclared status code, and no response that breaks its declared schema or content type."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TESTS, Server, launch_tiny_llm, register_flexible

sys.path.insert(0, str(TESTS / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

CONFIG = """
[parameters]
"path.model_uid" = "echo"

[[operations]]
include-path = "/v1/chat/completions"
parameters = { "body.model" = "tiny" }

[[operations]]
include-path = "/v1/completions"
parameters = { "body.model" = "tiny" }

[[operations]]
include-path = "/v1/flexible/infers"
parameters = { "body.model" = "echo" }
"""
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    model_dir = tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama")))
    env = {"MODELYARD_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    srv = Server(tmp_path_factory.mktemp("openapi"), env=env).start()
    with srv.http() as http:
        assert register_flexible(http, "echo", "echo_model.launcher").status_code == 200
        assert http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible"}).status_code == 200
        launch_tiny_llm(http, model_dir)
    yield srv
    srv.stop()


def test_every_route_declares_its_errors_with_the_real_body(fuzzed):
    import httpx

    document = httpx.get(fuzzed.url + "/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status in ("400", "401", "403", "404", "413", "415", "422", "503"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    body = document["paths"]["/v1/flexible/infers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["model"] and body["properties"]["args"]["type"] == "array"


def test_schemathesis_finds_no_violation(fuzzed, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "--config-file", str(config), "run", fuzzed.url + "/openapi.json", "--checks", CHECKS,
         "--max-examples", "20", "--workers", "1", "--exclude-method", "DELETE",
         # destructive: keys would turn keys on, cancel ends a model, prune removes envs
         "--exclude-path", "/v1/keys", "--exclude-path", "/v1/models/{model_uid}/cancel",
         "--exclude-path", "/v1/virtualenvs/prune"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1].lower()
