"""The flexible example of Xinference's documentation, end to end: curl-style HTTP, client, CLI."""

import concurrent.futures
import json

import pytest

from helpers import FLEXIBLE_FIXTURES, pid_alive, register_flexible, wait_until
from modelyard.client import Client
from modelyard.errors import InvalidRequest, ModelError, NotFound

EXAMPLE_JSON = (FLEXIBLE_FIXTURES / "my_flexible_model.json").read_text()
SENTENCE = "I feel nice and am happy today"


@pytest.fixture
def example(server, http):
    """The documentation's JSON registered unchanged, cleaned up after the test."""
    response = http.post("/v1/model_registrations/flexible", json={"model": EXAMPLE_JSON, "persist": False})
    assert response.status_code == 200, response.text
    yield "my-flexible-model"
    for uid in list(Client(server.url).list_models()):
        http.delete(f"/v1/models/{uid}")
    http.delete("/v1/model_registrations/flexible/my-flexible-model")


def test_example_over_http(http, example):
    response = http.post("/v1/models", json={"model_name": example, "model_type": "flexible"})
    assert response.status_code == 200, response.text
    uid = response.json()["model_uid"]
    assert uid == example
    response = http.post("/v1/flexible/infers", json={"model": uid, "args": [SENTENCE]})
    assert response.status_code == 200
    assert response.json() == {"score": 2}


def test_example_through_client(server, example):
    client = Client(server.url)
    uid = client.launch_model(example, model_type="flexible")
    assert client.get_model(uid).infer(SENTENCE) == {"score": 2}
    # "sad" is a default negative word; "nice" only counts because of the registered launcher_args
    assert client.get_model(uid).infer("nice but sad") == {"score": 0}
    registrations = client.list_model_registrations("flexible")
    assert any(r["model_name"] == example and r["is_builtin"] is False for r in registrations)
    assert client.get_model_registration("flexible", example)["launcher"] == "my_flexible_model.launcher"
    client.terminate_model(uid)
    assert uid not in client.list_models()


def test_example_through_cli(server, tmp_path):
    path = tmp_path / "model.json"
    path.write_text(EXAMPLE_JSON)
    try:
        assert "my-flexible-model" in server.cli("register", "--model-type", "flexible", "--file", str(path)).stdout
        listing = server.cli("registrations", "--model-type", "flexible").stdout
        assert "my-flexible-model" in listing and "MODEL_NAME" in listing
        launched = server.cli("launch", "--model-name", "my-flexible-model", "--model-type", "flexible").stdout
        assert "my-flexible-model" in launched
        listing = server.cli("list").stdout
        assert "my-flexible-model" in listing and "READY" in listing
        result = server.cli("infer", "--model-uid", "my-flexible-model", SENTENCE)
        assert json.loads(result.stdout) == {"score": 2}
        server.cli("terminate", "--model-uid", "my-flexible-model")
        assert "my-flexible-model" not in server.cli("list").stdout
    finally:
        server.cli("terminate", "--model-uid", "my-flexible-model", check=False)
        server.cli("unregister", "--model-type", "flexible", "--model-name", "my-flexible-model", check=False)


def test_cli_launch_options_reach_the_launcher(server, http, unique):
    name = unique("cliopts")
    assert register_flexible(http, name, "edge_models.launcher", {"a": 1}).status_code == 200
    server.cli("launch", "--model-name", name, "--model-type", "flexible", "--model-uid", name,
               "--a", "2", "--words", '["x", "y"]', "--label", "plain text", "--flag=true")
    result = server.cli("infer", "--model-uid", name, "echo", "--kwargs", '{"value": [1, 2]}')
    echoed = json.loads(result.stdout)
    assert echoed["value"] == [1, 2]
    assert echoed["config"] == {"a": 2, "words": ["x", "y"], "label": "plain text", "flag": True}
    wrong = server.cli("infer", "--model-uid", name, "echo", "--kwargs", '{"nope": 1}', check=False)
    assert wrong.returncode != 0 and "nope" in wrong.stderr and "Traceback" not in wrong.stderr
    server.cli("terminate", "--model-uid", name)


def test_cli_endpoint_option_and_unreachable_server(server):
    result = server.cli("list", "--endpoint", "http://127.0.0.1:9", check=False)
    assert result.returncode != 0
    assert "Cannot reach the modelyard server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_model_runs_in_its_own_process(http, unique):
    pids = []
    for _ in range(2):
        name = unique("proc")
        assert register_flexible(http, name, "edge_models.launcher").status_code == 200
        uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
        described = http.get(f"/v1/models/{uid}").json()
        assert described["model_type"] == "flexible" and described["status"] == "READY"
        assert described["model_ability"] == ["infer"]
        pid = described["pid"]
        assert pid != http.get("/status").json()["pid"]
        assert http.post("/v1/flexible/infers", json={"model": uid, "args": ["pid"]}).json() == pid
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"modelyard.worker" in f.read()
        pids.append((uid, pid))
    assert pids[0][1] != pids[1][1]
    for uid, pid in pids:
        assert http.delete(f"/v1/models/{uid}").status_code == 200
        assert wait_until(lambda pid=pid: not pid_alive(pid), timeout=10)


def test_launch_kwargs_override_launcher_args(http, unique):
    name = unique("override")
    assert register_flexible(http, name, "edge_models.launcher", {"a": 1, "b": 2}).status_code == 200
    uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "b": 3, "c": None,
                                        "model_path": "/elsewhere"}).json()["model_uid"]
    echoed = http.post("/v1/flexible/infers", json={"model": uid, "args": ["echo"]}).json()
    assert echoed["config"] == {"a": 1, "b": 3, "c": None}
    assert echoed["model_path"] == "/elsewhere"
    http.delete(f"/v1/models/{uid}")


def test_default_uid_gets_a_suffix_when_taken(http, unique):
    name = unique("suffix")
    register_flexible(http, name, "edge_models.launcher")
    first = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    second = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    assert first == name and second == f"{name}-1"
    taken = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": first})
    assert taken.status_code == 409 and first in taken.json()["detail"]
    listed = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert {first, second} <= listed
    for uid in (first, second):
        http.delete(f"/v1/models/{uid}")


def test_launch_without_waiting_reports_progress(http, unique):
    name = unique("nowait")
    register_flexible(http, name, "edge_models.launcher")
    response = http.post("/v1/models", params={"wait_ready": "false"},
                         json={"model_name": name, "model_type": "flexible"})
    assert response.status_code == 200
    uid = response.json()["model_uid"]
    assert wait_until(lambda: http.get(f"/v1/models/{uid}/progress").json()["stage"] == "ready", timeout=20)
    progress = http.get(f"/v1/models/{uid}/progress").json()
    assert progress["progress"] == 1.0 and progress["status"] == "READY"
    http.delete(f"/v1/models/{uid}")


def test_results_are_converted_to_json(http, unique):
    name = unique("convert")
    register_flexible(http, name, "edge_models.launcher")
    uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]

    def infer(*args, **kwargs):
        return http.post("/v1/flexible/infers", json={"model": uid, "args": list(args), **kwargs})

    assert infer("numpy").json() == {"array": [0.0, 0.5, 1.0], "scalar": 7}
    assert infer("pydantic").json() == {"x": 1, "y": 2}
    assert infer("dataclass").json() == [{"label": "cat", "score": 0.5}]
    opaque = infer("opaque")
    assert opaque.status_code == 500
    assert "builtins.object" in opaque.json()["detail"] and "cannot be converted to JSON" in opaque.json()["detail"]
    # a model whose own code raises answers 500 with the exception, and stays usable
    raised = infer("raise", value=3)
    assert raised.status_code == 500
    assert raised.json()["detail"] == "ValueError: bad value 3"
    assert raised.json()["error"]["type"] == "model_error"
    assert infer("echo", value="still here").json()["value"] == "still here"
    http.delete(f"/v1/models/{uid}")


def test_client_raises_server_errors(server, unique, http):
    client = Client(server.url)
    with pytest.raises(NotFound, match="No model with uid 'nope'"):
        client.get_model("nope")
    name = unique("clienterr")
    register_flexible(http, name, "edge_models.launcher")
    uid = client.launch_model(name, model_type="flexible")
    model = client.get_model(uid)
    with pytest.raises(InvalidRequest, match="Arguments do not fit infer"):
        model.infer("echo", 1, 2, 3)
    with pytest.raises(ModelError, match="ValueError: bad value"):
        model.infer("raise", value=1)
    client.terminate_model(uid)


def test_terminated_model_leaves_no_process(http, unique):
    name = unique("term")
    register_flexible(http, name, "edge_models.launcher")
    uid = http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).json()["model_uid"]
    pid = http.get(f"/v1/models/{uid}").json()["pid"]
    assert pid_alive(pid)
    assert http.delete(f"/v1/models/{uid}").json() == {"model_uid": uid, "terminated": True}
    # terminate returns after the worker has been reaped
    assert not pid_alive(pid)
    assert http.get(f"/v1/models/{uid}").status_code == 404


@pytest.mark.parametrize("serial", [True, False])
def test_a_model_declaring_concurrency_1_is_entered_by_one_call_at_a_time(http, unique, serial):
    name = unique("overlap")
    assert register_flexible(http, name, "edge_models.overlap_launcher", {"serial": serial}).status_code == 200
    assert http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).status_code == 200

    def infer(_):
        response = http.post("/v1/flexible/infers", json={"model": name, "hold": 0.1})
        assert response.status_code == 200, response.text
        return response.json()["most_at_once"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        seen = max(pool.map(infer, range(8)))
    # declared 1: never two at once; undeclared (the control), the worker's threads overlap them
    assert seen == 1 if serial else seen > 1
    http.delete(f"/v1/models/{name}")


@pytest.mark.parametrize("command", [("chat",), ("generate", "hello")])
def test_chat_or_generate_on_a_flexible_model_is_a_one_line_error(server, http, unique, command):
    name = unique("notllm")
    assert register_flexible(http, name, "edge_models.launcher").status_code == 200
    assert http.post("/v1/models", json={"model_name": name, "model_type": "flexible"}).status_code == 200
    done = server.cli(command[0], "--model-uid", name, *command[1:], check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"Model {name!r} is a flexible model and cannot {command[0]}" in done.stderr
    assert "modelyard infer" in done.stderr
    http.delete(f"/v1/models/{name}")
