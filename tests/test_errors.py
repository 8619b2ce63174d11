"""Bad input gets a 4xx whose JSON says what to fix; a launch that fails leaves the server healthy."""

import json

import pytest

from helpers import JSON, register_flexible


def assert_error(response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str)
    assert body["error"]["message"] == body["detail"]
    assert body["error"]["code"] == status and body["error"]["type"]
    for fragment in fragments:
        assert fragment in body["detail"], (fragment, body["detail"])
    return body


def test_malformed_json_body(http):
    response = http.post("/v1/model_registrations/flexible", content=b'{"model": ', headers=JSON)
    assert_error(response, 400, "not valid JSON")
    assert_error(http.post("/v1/flexible/infers", content=b"{nope", headers=JSON), 400, "not valid JSON")
    assert_error(http.post("/v1/models", content=b"[1,", headers=JSON),
                 400, "not valid JSON")


def test_malformed_model_definition(http):
    response = http.post("/v1/model_registrations/flexible", json={"model": "{not json"})
    assert_error(response, 400, "model definition is not valid JSON")
    response = http.post("/v1/model_registrations/flexible", json={"model": "[1, 2]"})
    assert_error(response, 400, "must be a JSON object")


def test_fastapi_validation_names_the_field(http):
    body = assert_error(http.post("/v1/model_registrations/flexible", json={"persist": True}), 422, "model")
    assert body["detail"].startswith("Invalid request: model: Field required")
    assert body["error"]["param"] == "model"
    assert_error(http.post("/v1/models", json={"model_type": "flexible"}), 422, "model_name: Field required")
    assert_error(http.post("/v1/model_registrations/flexible", json={"model": "{}", "persist": "maybe"}),
                 422, "persist")


def test_schema_violations(http):
    spec = {"model_name": "no-launcher", "model_uri": "/x"}
    body = assert_error(http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}),
                        400, "Invalid flexible registration", "launcher: Field required")
    assert "Traceback" not in body["detail"]
    spec = {"model_name": "bad-args", "launcher": "m.f", "launcher_args": "{oops"}
    assert_error(http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}),
                 400, "launcher_args is not valid JSON")
    spec = {"model_name": "llm-nospecs", "model_specs": "pytorch"}
    assert_error(http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), 400, "model_specs")


@pytest.mark.parametrize("name", ["-leading-dash", "has space", "dot.ted", "slash/name", "", "ünï"])
def test_invalid_model_names(http, name):
    response = register_flexible(http, name, "edge_models.launcher")
    assert response.status_code == 400, response.text
    assert "model_name" in response.json()["detail"]


def test_taken_model_name(http, unique):
    name = unique("taken")
    assert register_flexible(http, name, "edge_models.launcher").status_code == 200
    assert_error(register_flexible(http, name, "edge_models.launcher"), 409, "already registered", name)
    http.delete(f"/v1/model_registrations/flexible/{name}")


def test_unknown_model_type(http):
    body = assert_error(http.post("/v1/model_registrations/nonsense", json={"model": "{}"}), 400,
                        "Unknown model type 'nonsense'", "flexible", "LLM")
    assert "embedding" in body["detail"]
    assert_error(http.get("/v1/model_registrations/nonsense"), 400, "Unknown model type")
    assert_error(http.post("/v1/models", json={"model_name": "x", "model_type": "nonsense"}), 400,
                 "Unknown model type")


def test_model_type_is_case_insensitive(http, unique):
    name = unique("case")
    assert register_flexible(http, name, "edge_models.launcher").status_code == 200
    names = [r["model_name"] for r in http.get("/v1/model_registrations/Flexible").json()]
    assert name in names
    http.delete(f"/v1/model_registrations/FLEXIBLE/{name}")


def test_missing_model_uri_path(http, tmp_path):
    spec = {"model_name": "llm-missing", "model_lang": ["en"], "model_ability": ["chat"],
            "model_family": "llama", "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1,
                                                      "quantization": "none",
                                                      "model_uri": f"file://{tmp_path}/nowhere"}]}
    assert_error(http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), 400,
                 "does not exist", "nowhere")
    spec["model_specs"][0]["model_uri"] = "relative/dir"
    assert_error(http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), 400, "absolute")
    # a path that exists is accepted; the registration is then listed and removable
    spec["model_specs"][0]["model_uri"] = f"file://{tmp_path}"
    assert http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}).status_code == 200
    assert http.delete("/v1/model_registrations/LLM/llm-missing").status_code == 200


def test_flexible_model_uri_is_not_checked(http, unique):
    name = unique("anyuri")
    response = register_flexible(http, name, "edge_models.launcher", model_uri="/does/not/exist")
    assert response.status_code == 200
    http.delete(f"/v1/model_registrations/flexible/{name}")


def test_unknown_model_name_at_launch(http):
    assert_error(http.post("/v1/models", json={"model_name": "never-registered", "model_type": "flexible"}),
                 404, "never-registered")


def test_unknown_model_uid(http):
    assert_error(http.get("/v1/models/ghost"), 404, "ghost")
    assert_error(http.get("/v1/models/ghost/progress"), 404, "ghost")
    assert_error(http.delete("/v1/models/ghost"), 404, "ghost")
    assert_error(http.post("/v1/flexible/infers", json={"model": "ghost", "args": []}), 404, "ghost")


def test_unknown_registration(http):
    assert_error(http.get("/v1/model_registrations/flexible/ghost"), 404, "ghost")
    assert_error(http.delete("/v1/model_registrations/flexible/ghost"), 404, "ghost")


def test_infer_arguments_that_do_not_fit(http, unique):
    name = unique("fit")
    register_flexible(http, name, "edge_models.launcher")
    uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    assert_error(http.post("/v1/flexible/infers", json={"model": uid, "args": ["echo", 1, 2]}), 400,
                 "Arguments do not fit infer(kind: str, value=None)", "too many positional arguments")
    assert_error(http.post("/v1/flexible/infers", json={"model": uid, "args": [], "bogus": 1}), 400,
                 "missing a required argument: 'kind'")
    assert_error(http.post("/v1/flexible/infers", json={"model": uid, "args": "echo"}), 400, '"args" must be')
    assert_error(http.post("/v1/flexible/infers", json={"args": ["echo"]}), 400, '"model" is required')
    assert_error(http.post("/v1/flexible/infers", json=[uid]), 400, "must be a JSON object")
    http.delete(f"/v1/models/{uid}")


def test_unsupported_launch_parameters(http, unique):
    name = unique("params")
    register_flexible(http, name, "edge_models.launcher")
    body = {"model_name": name, "model_type": "flexible"}
    assert_error(http.post("/v1/models", json={**body, "replica": 0}), 400, "replica")
    assert_error(http.post("/v1/models", json={**body, "n_gpu": 1}), 400, "n_gpu")
    assert_error(http.post("/v1/models", json={**body, "model_format": "pytorch"}), 400, "model_format")
    assert_error(http.post("/v1/models", json={**body, "model_engine": "transformers"}), 400, "model_engine")
    assert_error(http.post("/v1/models", json={**body, "model_uid": "bad uid"}), 400, "model_uid")
    # what Xinference's client sends by default is accepted
    ok = http.post("/v1/models", json={**body, "replica": 1, "n_worker": 1, "n_gpu": "auto",
                                       "request_limits": None, "worker_ip": None, "gpu_idx": None})
    assert ok.status_code == 200, ok.text
    http.delete(f"/v1/models/{ok.json()['model_uid']}")


def test_a_model_no_engine_can_serve_is_a_clear_error(http, tmp_path):
    spec = {"model_name": "llm-noengine", "model_specs": [{"model_format": "mlx", "model_size_in_billions": 1,
                                                           "quantization": "4bit", "model_uri": str(tmp_path)}]}
    assert http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}).status_code == 200
    assert_error(http.post("/v1/models", json={"model_name": "llm-noengine", "model_type": "LLM"}), 400,
                 "No installed engine can serve llm-noengine", "not mlx")
    body = assert_error(http.post("/v1/models", json={"model_name": "llm-noengine", "model_type": "LLM",
                                                      "model_engine": "MLX"}), 404,
                        "No engine named 'MLX' is registered for LLM models (registered: ")
    assert all(name in body["detail"] for name in ("transformers", "llama.cpp", "vllm"))
    assert "pip install modelyard-engine" not in body["detail"]  # no such package on PyPI
    assert_error(http.post("/v1/models", json={"model_name": "llm-noengine", "model_type": "LLM",
                                               "model_format": "pytorch"}), 400, "has no spec with format=pytorch",
                 "It offers: mlx 1B 4bit (huggingface)")
    http.delete("/v1/model_registrations/LLM/llm-noengine")


@pytest.mark.parametrize("launcher, fragments", [
    ("no_such_module.launcher", ["Cannot import launcher 'no_such_module.launcher'",
                                 "No module named 'no_such_module'"]),
    ("edge_models.missing_function", ["Cannot import launcher", "missing_function"]),
    ("edge_models.failing_load_launcher", ["FailingLoad.load() raised RuntimeError: weights file is corrupt"]),
    ("edge_models.raising_launcher", ["raised OSError: launcher could not open its config"]),
    ("edge_models.no_infer_launcher", ["returned a dict, which has no infer() method"]),
])
def test_failed_launch_carries_the_original_error(http, unique, launcher, fragments):
    name = unique("fail")
    assert register_flexible(http, name, launcher).status_code == 200
    body = assert_error(http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}),
                        400, f"Failed to launch model '{name}'", *fragments)
    assert body["error"]["type"] == "invalid_request_error"
    # nothing is left behind and the server is healthy
    assert http.get(f"/v1/models/{name}").status_code == 404
    assert http.get("/status").json()["status"] == "ok"
    http.delete(f"/v1/model_registrations/flexible/{name}")


def test_unregistered_launcher_name_fails_before_spawning(http, unique):
    name = unique("noname")
    register_flexible(http, name, "nosuchlauncher")
    assert_error(http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}), 404,
                 "No flexible launcher named 'nosuchlauncher'")


def test_failed_launch_without_waiting_is_reported(http, unique):
    name = unique("failnowait")
    register_flexible(http, name, "edge_models.failing_load_launcher")
    uid = http.post("/v1/models", params={"wait_ready": "false"},
                    json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    from helpers import wait_until
    assert wait_until(lambda: http.get(f"/v1/models/{uid}").json()["status"] == "FAILED", timeout=20)
    described = http.get(f"/v1/models/{uid}").json()
    assert "weights file is corrupt" in described["error"]
    assert "weights file is corrupt" in described["stderr_tail"]  # the worker's traceback
    assert_error(http.post("/v1/flexible/infers", json={"model": uid, "args": ["echo"]}), 503, "FAILED")
    assert http.delete(f"/v1/models/{uid}").status_code == 200


def test_values_the_worker_link_cannot_carry_are_400(http, unique):
    name = unique("carry")
    register_flexible(http, name, "edge_models.launcher")
    uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    body = json.dumps({"model": uid, "args": ["echo"], "value": 2**70})
    assert_error(http.post("/v1/flexible/infers", content=body, headers=JSON), 400, "cannot be passed to the model")
    body = json.dumps({"model": uid, "args": ["echo"]})[:-1] + ', "value": "\\ud800"}'  # a lone surrogate
    assert_error(http.post("/v1/flexible/infers", content=body, headers=JSON), 400, "cannot be passed to the model")
    deep = "[" * 100_000 + "]" * 100_000
    assert_error(http.post("/v1/flexible/infers", content=deep, headers=JSON), 400, "not valid JSON")
    # the connection stays usable, and so does the model
    assert http.post("/v1/flexible/infers", json={"model": uid, "args": ["echo"], "value": 1}).status_code == 200
    nan = http.post("/v1/flexible/infers", json={"model": uid, "args": ["nan"]})
    assert nan.status_code == 500 and "JSON cannot hold" in nan.json()["detail"]
    assert http.post("/v1/models/" + uid + "/cancel").json()["terminated"] is True


def test_unknown_route_and_method(http):
    assert_error(http.get("/v1/nothing-here"), 404, "Not Found")
    assert_error(http.put("/v1/models"), 405, "Method Not Allowed")


def test_names_and_uids_are_at_most_200_characters(http, unique):
    long_name = "n" * 201
    assert_error(register_flexible(http, long_name, "edge_models.launcher"), 400, "model_name", "most is 200")
    name = unique("short")
    assert register_flexible(http, name, "edge_models.launcher").status_code == 200
    assert_error(http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": "u" * 201}),
                 400, "model_uid", "most is 200")
    assert_error(http.post("/v1/models", json={"model_name": "x" * 10_000, "model_type": "flexible"}),
                 400, "model_name is 10000 characters")
    assert register_flexible(http, "n" * 200, "edge_models.launcher").status_code == 200
    http.delete(f"/v1/model_registrations/flexible/{'n' * 200}")
