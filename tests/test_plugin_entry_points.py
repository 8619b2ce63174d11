"""Entry-point discovery for real: test plugins pip-installed into a throwaway environment.

The throwaway venv sees this environment's packages (modelyard included) through a `.pth` bridge
that calls site.addsitedir, so installing the plugins costs no download and touches nothing of
the developer's environment.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from wheels import build_wheel

from helpers import TESTS, Server, bridged_venv, register_flexible

PLUGINS = TESTS / "plugins"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> Path:
    return bridged_venv(tmp_path_factory.mktemp("plugin-env") / "venv", PLUGINS / "good", PLUGINS / "broken",
                        PLUGINS / "clash")


@pytest.fixture(scope="module")
def plugin_server(plugin_env, tmp_path_factory):
    home = tmp_path_factory.mktemp("plugin-home")
    srv = Server(home, python=str(plugin_env), env={"MODELYARD_TEST_MARKER": str(home / "marker.txt"),
                                                     "UV_OFFLINE": "1",
                                                     "MODELYARD_ALLOWED_PACKAGE_SOURCES": str(home / "wheels")}).start()
    yield srv
    srv.stop()


def test_plugins_are_not_in_the_developer_environment():
    import importlib.metadata

    names = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    assert "modelyard-testplugin-good" not in names


def test_cli_lists_good_and_broken_plugins(plugin_server):
    table = plugin_server.cli("plugins").stdout
    assert "echo-test" in table and "modelyard-testplugin-good" in table and "1.2.3" in table
    assert "flexible_launchers: echo-test" in table
    assert "broken-launcher" in table and "ModuleNotFoundError" in table
    rows = {r["name"]: r for r in json.loads(plugin_server.cli("plugins", "--json").stdout)}
    assert rows["echo-test"]["error"] is None
    assert rows["echo-test"]["registered"]["flexible_launchers"] == ["echo-test", "needs-demo"]
    assert "modelyard_engine_library_that_is_not_installed" in rows["broken-launcher"]["error"]
    assert rows["broken-launcher"]["distribution"] == "modelyard-testplugin-broken"
    assert rows["modelyard.types.builtin"]["builtin"] is True


def test_plugin_launcher_serves_a_model_while_another_plugin_is_broken(plugin_server):
    with plugin_server.http() as http:
        assert register_flexible(http, "echo", "echo-test", {"prefix": ">"}).status_code == 200
        response = http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible"})
        assert response.status_code == 200, response.text
        result = http.post("/v1/flexible/infers", json={"model": "echo", "args": ["hi"]}).json()
        assert result["echo"] == "hi" and result["prefix"] == ">"
        worker_pid = http.get("/v1/models/echo").json()["pid"]
        assert result["pid"] == worker_pid
        server_pid = http.get("/status").json()["pid"]
        # the implementation (and the "ML library" it imports) loaded in the worker, never in the server
        marker_pids = {int(line) for line in Path(plugin_server.env["MODELYARD_TEST_MARKER"]).read_text().split()}
        assert worker_pid in marker_pids
        assert server_pid not in marker_pids
        http.delete("/v1/models/echo")


def _rows(plugin_server) -> list[dict]:
    return json.loads(plugin_server.cli("plugins", "--json").stdout)


def test_two_distributions_may_both_name_an_entry_point_transformers(plugin_server):
    rows = [r for r in _rows(plugin_server) if r["name"] == "transformers"]
    assert {r["distribution"] for r in rows} == {"modelyard-engine-transformers", "modelyard-testplugin-clash"}
    assert len({r["id"] for r in rows}) == 2
    with plugin_server.http() as http:
        # the launcher of the clash plugin serves a flexible model...
        assert register_flexible(http, "pipe", "transformers").status_code == 200
        assert http.post("/v1/models", json={"model_name": "pipe", "model_type": "flexible"}).status_code == 200
        answer = http.post("/v1/flexible/infers", json={"model": "pipe", "args": ["hi"]}).json()
        assert answer == {"launcher": "transformers (clash plugin)", "text": "hi"}
        http.delete("/v1/models/pipe")
        # ...while the engine plugin of that name still serves LLMs
        report = http.get("/v1/engines/LLM/qwen2.5-instruct").json()
        assert report["transformers"]["available"] is True


def test_clashes_raising_hooks_and_misspelled_hooks_are_shown(plugin_server):
    rows = {(r["distribution"], r["name"]): r for r in _rows(plugin_server)}
    good = rows[("modelyard-testplugin-good", "echo-test")]
    clash = rows[("modelyard-testplugin-clash", "transformers")]
    holders = [r for r in (good, clash) if "shared-name (embedding)" in r["registered"].get("engines", [])]
    assert len(holders) == 1  # the first loaded keeps it; neither silently replaces the other
    for row in (good, clash):
        assert any("engine 'shared-name for embedding' is registered by both" in p for p in row["problems"]), row
    assert any("register_models raised RuntimeError: the catalogue file is missing; none of its 1" in p
               for p in clash["problems"])
    assert "models" not in clash["registered"]  # registered before the raise: it does not count
    assert any("unknown hook 'register_engine' (did you mean 'register_engines'?)" in p for p in clash["problems"])
    assert clash["contract"] == 1
    table = plugin_server.cli("plugins").stdout
    assert "unknown hook 'register_engine'" in table and "is registered by both" in table
    with plugin_server.http() as http:
        assert http.get("/v1/model_registrations/embedding/half-registered").status_code == 404


def test_the_trace_switch_logs_plugin_loading(plugin_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    done = subprocess.run([str(plugin_env), "-m", "modelyard", "plugins", "--local", "--json"],
                          env={**env, "MODELYARD_TRACE_PLUGINS": "1"}, check=True, capture_output=True, text=True)
    assert "modelyard plugins: modelyard-testplugin-good/echo-test 1.2.3 imported modelyard_testplugin_good.plugin" \
        in done.stderr
    assert "modelyard-testplugin-broken/broken-launcher 0.0.1 failed to import: ModuleNotFoundError" in done.stderr
    assert "clash: engine 'shared-name for embedding'" in done.stderr


def test_asking_for_a_broken_plugins_launcher_answers_its_error(plugin_server):
    with plugin_server.http() as http:
        register_flexible(http, "uses-broken", "broken-launcher")
        response = http.post("/v1/models", json={"model_name": "uses-broken", "model_type": "flexible"})
        assert response.status_code == 400
        detail = response.json()["detail"]
        assert "plugin 'broken-launcher'" in detail and "modelyard-testplugin-broken" in detail
        assert "No module named 'modelyard_engine_library_that_is_not_installed'" in detail


def test_the_worker_imports_what_the_server_resolved_whatever_its_plugin_switches(plugin_server):
    with plugin_server.http() as http:
        register_flexible(http, "echo-off", "echo-test")
        response = http.post("/v1/models", json={"model_name": "echo-off", "model_type": "flexible",
                                                 "envs": {"MODELYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}})
        # the launcher's import path travels in the launch: the worker loads no plugin to find it
        assert response.status_code == 200, response.text
        assert http.post("/v1/flexible/infers", json={"model": "echo-off", "args": ["x"]}).json()["echo"] == "x"
        http.delete("/v1/models/echo-off")


@pytest.mark.parametrize("switches, expected", [
    ({}, {"echo-test", "broken-launcher"}),
    ({"MODELYARD_DISABLE_PLUGIN_AUTOLOAD": "1"}, set()),
    ({"MODELYARD_LOAD_PLUGINS": "modelyard-testplugin-good"}, {"echo-test"}),
    ({"MODELYARD_LOAD_PLUGINS": "modelyard_testplugin_broken"}, {"broken-launcher"}),
    ({"MODELYARD_LOAD_PLUGINS": ""}, set()),
])
def test_switches_limit_entry_points_but_never_builtins(plugin_env, switches, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    out = subprocess.run([str(plugin_env), "-m", "modelyard", "plugins", "--local", "--json"],
                         env={**env, **switches}, check=True, capture_output=True, text=True).stdout
    names = {row["name"] for row in json.loads(out)}
    assert names & {"echo-test", "broken-launcher"} == expected
    assert {"modelyard.types.builtin", "server"} <= names


def test_a_launchers_runtime_requirements_go_into_the_models_env(plugin_server):
    wheels = plugin_server.home / "wheels"  # the server's allowed package source
    build_wheel(wheels, "demo-pkg", "2.0")
    venv = {"packages": [], "inherit_pip_config": False, "find_links": str(wheels)}
    with plugin_server.http() as http:
        assert register_flexible(http, "demo", "needs-demo", virtualenv=venv).status_code == 200
        response = http.post("/v1/models", json={"model_name": "demo", "model_type": "flexible"})
        assert response.status_code == 200, response.text
        assert http.get("/v1/models/demo").json()["virtualenv"] is not None
        assert http.post("/v1/flexible/infers", json={"model": "demo", "args": []}).json() == {"demo_pkg": "2.0"}
        http.delete("/v1/models/demo")


ADMIN = "my-admin-key-of-the-plugin-route-tests-0123"


@pytest.fixture(scope="module")
def keyed_plugin_server(plugin_env, tmp_path_factory):
    home = tmp_path_factory.mktemp("plugin-routes-home")
    srv = Server(home, python=str(plugin_env), env={"MODELYARD_ADMIN_KEY": ADMIN}, api_key=ADMIN).start()
    with srv.http() as http:
        assert register_flexible(http, "echo", "echo-test").status_code == 200
        assert http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible"}).status_code == 200
        inference = http.post("/v1/keys", json={"scopes": ["inference"]}).json()["key"]
    srv.inference_key = inference
    yield srv
    srv.stop()


def test_a_plugin_adds_routes_answering_json_events_bytes_and_uploads(keyed_plugin_server):
    with keyed_plugin_server.http(api_key=keyed_plugin_server.inference_key) as http:
        say = {"model": "echo", "text": "one two three"}
        whole = http.post("/v1/echo/whole", json=say)
        assert whole.status_code == 200 and whole.json()["echo"] == "one two three"
        events = http.post("/v1/echo/events", json=say)
        assert events.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in events.text.splitlines() if line.startswith("data: ")]
        assert [json.loads(d)["word"] for d in data[:-1]] == ["one", "two", "three"] and data[-1] == "[DONE]"
        raw = http.post("/v1/echo/bytes", json=say)
        assert raw.headers["content-type"] == "audio/wav" and raw.content == b"one|two|three|"
        upload = http.post("/v1/echo/upload", data={"model": "echo"}, files={"file": ("clip.wav", b"x" * 1000)})
        assert upload.status_code == 200, upload.text
        assert upload.json()["echo"] == "clip.wav:1000"
        missing = http.post("/v1/echo/whole", json={"model": "nope", "text": "x"})
        assert missing.status_code == 404 and "No model with uid 'nope'" in missing.json()["detail"]
        # multipart is taken only where the plugin declared an upload
        assert http.post("/v1/echo/whole", files={"file": ("a", b"b")}).status_code == 415


def test_plugin_routes_enforce_their_scopes(keyed_plugin_server):
    with keyed_plugin_server.http(api_key=keyed_plugin_server.inference_key) as http:
        assert http.get("/v1/echo/admin").status_code == 403  # registered without scopes: admin
        assert http.get("/v1/echo/models-read").status_code == 403  # its own declared scope
    with keyed_plugin_server.http(api_key="") as anonymous:
        anonymous.headers.pop("authorization", None)
        assert anonymous.post("/v1/echo/whole", json={"model": "echo", "text": "x"}).status_code == 401
    with keyed_plugin_server.http() as admin:
        assert admin.get("/v1/echo/admin").json() == {"scope": "admin"}
        assert admin.get("/v1/echo/models-read").json() == {"scope": "models:read"}
        published = admin.get("/openapi.json").json()["paths"]
        assert published["/v1/echo/whole"]["post"]["x-scopes"] == ["inference"]
        assert published["/v1/echo/admin"]["get"]["x-scopes"] == ["admin"]
        rows = {r["name"]: r for r in admin.get("/v1/plugins").json()["plugins"]}
        assert "POST /v1/echo/upload" in rows["echo-test"]["registered"]["routes"]


def test_the_ability_is_checked_before_the_worker_is_called(keyed_plugin_server):
    with keyed_plugin_server.http() as http:
        response = http.post("/v1/echo/transcribe", json={"model": "echo", "text": "x"})
        assert response.status_code == 400
        assert response.json()["detail"] == ("Model 'echo' cannot transcribe: its abilities are infer "
                                             "(it answers infer).")
        response = http.post("/v1/chat/completions", json={"model": "echo", "messages": [
            {"role": "user", "content": "hi"}]})
        assert response.status_code == 400 and "is a flexible model" in response.json()["detail"]
