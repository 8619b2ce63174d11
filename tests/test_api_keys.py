"""API keys with scopes, end to end: every route against every scope, the openai SDK and
xinference-client with a key, limited, expired and revoked keys, and the bind rule."""

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest
from xinference_client import RESTfulClient

from helpers import FLEXIBLE_FIXTURES, JSON, TESTS, Server, free_port, launch_tiny_llm, register_flexible, wait_until

sys.path.insert(0, str(TESTS / "fixtures" / "llm"))
import tiny_llama  # noqa: E402

ADMIN = "my-admin-key-of-the-keys-tests-0123456789"
SCOPES = ("inference", "models:read", "models:launch", "models:register", "admin")
EXAMPLE_JSON = (FLEXIBLE_FIXTURES / "my_flexible_model.json").read_text()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    model_dir = tiny_llama.build(str(tmp_path_factory.mktemp("tiny-llama")))
    env = {"MODELYARD_ADMIN_KEY": ADMIN, "MODELYARD_API_KEY": ADMIN, "MODELYARD_TORCH_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    srv = Server(tmp_path_factory.mktemp("keyed"), env=env, api_key=ADMIN,
                 args=("--allow-launcher", "my_flexible_model.*")).start()
    with srv.http() as http:
        assert http.post("/v1/model_registrations/flexible", json={"model": EXAMPLE_JSON}).status_code == 200
        assert http.post("/v1/models", json={"model_name": "my-flexible-model",
                                             "model_type": "flexible"}).status_code == 200
        launch_tiny_llm(http, model_dir)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(keyed):
    with keyed.http() as http:
        yield http


def make_key(admin, *scopes, **options):
    response = admin.post("/v1/keys", json={"scopes": list(scopes), **options})
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["key"].startswith("my-") and created["prefix"] == created["key"][:10]
    return created


@pytest.fixture(scope="module")
def scoped_keys(admin):
    return {scope: make_key(admin, scope, name=f"test {scope}")["key"] for scope in SCOPES}


# -- every route, every scope ---------------------------------------------------------------------

PUBLIC = "public"
# (method, path as the OpenAPI document names it, concrete path, JSON body, the scopes that reach it)
ROUTES = [
    ("GET", "/status", "/status", None, {PUBLIC}),
    ("GET", "/v1/cluster/auth", "/v1/cluster/auth", None, {PUBLIC}),
    ("POST", "/v1/chat/completions", "/v1/chat/completions",
     {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, {"inference"}),
    ("POST", "/v1/completions", "/v1/completions", {"model": "nope", "prompt": "hi"}, {"inference"}),
    ("POST", "/v1/embeddings", "/v1/embeddings", {"model": "nope", "input": "hi"}, {"inference"}),
    ("POST", "/v1/rerank", "/v1/rerank", {"model": "nope", "query": "q", "documents": ["d"]}, {"inference"}),
    ("POST", "/v1/flexible/infers", "/v1/flexible/infers", {"model": "nope"}, {"inference"}),
    ("GET", "/v1/models", "/v1/models", None, {"inference", "models:read"}),
    ("GET", "/v1/models/{model_uid}", "/v1/models/nope", None, {"inference", "models:read"}),
    ("GET", "/v1/models/{model_uid}/progress", "/v1/models/nope/progress", None, {"models:read"}),
    ("GET", "/v1/models/{model_uid}/logs", "/v1/models/nope/logs", None, {"models:read"}),
    ("GET", "/v1/models/{model_uid}/events", "/v1/models/nope/events", None, {"models:read"}),
    ("GET", "/metrics", "/metrics", None, {"models:read"}),
    ("GET", "/v1/engines/{model_name}", "/v1/engines/nope", None, {"models:read"}),
    ("GET", "/v1/engines/{model_type}/{model_name}", "/v1/engines/LLM/nope", None, {"models:read"}),
    ("GET", "/v1/model_registrations/{model_type}", "/v1/model_registrations/flexible", None, {"models:read"}),
    ("GET", "/v1/model_registrations/{model_type}/{model_name}", "/v1/model_registrations/flexible/nope", None,
     {"models:read"}),
    ("POST", "/v1/models", "/v1/models", {"model_name": "nope", "model_type": "flexible"}, {"models:launch"}),
    ("DELETE", "/v1/models/{model_uid}", "/v1/models/nope", None, {"models:launch"}),
    ("POST", "/v1/models/{model_uid}/cancel", "/v1/models/nope/cancel", None, {"models:launch"}),
    ("POST", "/v1/model_registrations/{model_type}", "/v1/model_registrations/flexible", {"model": "{}"},
     {"models:register"}),
    ("DELETE", "/v1/model_registrations/{model_type}/{model_name}", "/v1/model_registrations/flexible/nope", None,
     {"models:register"}),
    ("GET", "/v1/plugins", "/v1/plugins", None, set()),
    ("GET", "/v1/virtualenvs", "/v1/virtualenvs", None, set()),
    ("DELETE", "/v1/virtualenvs/{key}", "/v1/virtualenvs/nope", None, set()),
    ("POST", "/v1/virtualenvs/prune", "/v1/virtualenvs/prune", None, set()),
    ("POST", "/v1/keys", "/v1/keys", {"scopes": []}, set()),
    ("GET", "/v1/keys", "/v1/keys", None, set()),
    ("DELETE", "/v1/keys/{key_id}", "/v1/keys/nope", None, set()),
]


def test_the_table_covers_every_route(keyed):
    document = httpx.get(keyed.url + "/openapi.json").json()
    published = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert published == {(method, path) for method, path, *_ in ROUTES}
    for (method, path, *_rest, reach) in ROUTES:  # the document states each route's scopes
        declared = set(document["paths"][path][method.lower()]["x-scopes"])
        assert declared == (reach or {"admin"}), (method, path)


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, *_ in ROUTES])
def test_every_route_needs_exactly_its_scope(keyed, scoped_keys, route):
    method, _path, concrete, body, reach = route
    kwargs = {"json": body} if body is not None else {}
    anonymous = httpx.request(method, keyed.url + concrete, timeout=30, **kwargs)
    if PUBLIC in reach:
        assert anonymous.status_code == 200
    else:
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"] == "Bearer"
    for scope, key in scoped_keys.items():
        response = httpx.request(method, keyed.url + concrete, headers={"authorization": f"Bearer {key}"},
                                 timeout=30, **kwargs)
        if PUBLIC in reach or scope in reach or scope == "admin":
            assert response.status_code not in (401, 403), (scope, response.text)
            assert response.status_code < 500, (scope, response.text)
        else:
            assert response.status_code == 403, (scope, response.text)
            assert "lacks the scope" in response.json()["detail"]


def test_the_docs_are_public(keyed):
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert httpx.get(keyed.url + path).status_code == 200, path


def test_a_bad_key_is_401(keyed):
    for header in ("Bearer my-not-a-real-key", "Basic abc", "Bearer"):
        response = httpx.get(keyed.url + "/v1/models", headers={"authorization": header})
        assert response.status_code == 401 and "not valid" in response.json()["detail"], header
    assert httpx.get(keyed.url + "/v1/cluster/auth").json() == {"auth": True}


# -- clients ------------------------------------------------------------------------------------

def test_the_openai_sdk_with_a_key(keyed, scoped_keys):
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=scoped_keys["inference"], max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, temperature=0)
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 4
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=4, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply.choices[0].message.content
    assert {m.id for m in client.models.list()} == {"tiny", "my-flexible-model"}
    anonymous = openai.OpenAI(base_url=keyed.url + "/v1", api_key="my-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        anonymous.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    reader = openai.OpenAI(base_url=keyed.url + "/v1", api_key=scoped_keys["models:launch"], max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="inference"):
        reader.completions.create(model="tiny", prompt="hi", max_tokens=2)


def test_xinference_client_with_a_key(keyed, scoped_keys):
    client = RESTfulClient(keyed.url, api_key=scoped_keys["inference"])
    assert set(client.list_models()) == {"tiny", "my-flexible-model"}
    assert client.get_model("my-flexible-model").infer("I feel nice and am happy today") == {"score": 2}
    reply = client.get_model("tiny").chat(messages=[{"role": "user", "content": "hi"}],
                                          generate_config={"max_tokens": 3, "temperature": 0})
    assert reply["choices"][0]["message"]["content"]
    assert client.get_model("tiny").generate("Once", generate_config={"max_tokens": 3})["choices"][0]["text"]
    with pytest.raises(RuntimeError, match="requires an API key"):
        RESTfulClient(keyed.url).list_models()


def test_the_modelyard_client_and_cli_with_a_key(keyed, scoped_keys):
    from modelyard.client import Client
    from modelyard.errors import Forbidden, Unauthenticated

    with Client(keyed.url, api_key=scoped_keys["inference"]) as client:
        assert client.get_model("my-flexible-model").infer("happy") == {"score": 1}
        with pytest.raises(Forbidden, match="models:launch"):
            client.terminate_model("my-flexible-model")
    with Client(keyed.url, api_key="my-nope") as client, pytest.raises(Unauthenticated):
        client.list_models()
    assert "my-flexible-model" in keyed.cli("list", "--api-key", scoped_keys["models:read"]).stdout
    env = {k: v for k, v in keyed.env.items() if k != "MODELYARD_API_KEY"}
    failed = subprocess.run([keyed.python, "-m", "modelyard", "list"], env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "requires an API key" in failed.stderr and "Traceback" not in failed.stderr


# -- limited, expired, revoked ------------------------------------------------------------------

def test_a_key_limited_to_one_model_cannot_call_another(keyed, admin):
    limited = make_key(admin, "inference", models=["my-flexible-*"])
    headers = {"authorization": f"Bearer {limited['key']}"}
    with keyed.http(api_key=limited["key"]) as http:
        assert http.post("/v1/flexible/infers", json={"model": "my-flexible-model", "args": ["happy"]}).json() == {
            "score": 1}
        refused = http.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 2,
                                                          "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 403 and "limited to my-flexible-*" in refused.json()["detail"]
        assert http.get("/v1/models/tiny").status_code == 403
        assert [m["id"] for m in http.get("/v1/models", headers=headers).json()["data"]] == ["my-flexible-model"]


def test_an_expired_key_is_401(keyed, admin):
    short = make_key(admin, "inference", expires_in="1s")
    assert httpx.get(keyed.url + "/v1/models", headers={"authorization": f"Bearer {short['key']}"}).status_code == 200
    time.sleep(1.2)
    response = httpx.get(keyed.url + "/v1/models", headers={"authorization": f"Bearer {short['key']}"})
    assert response.status_code == 401
    assert admin.post("/v1/keys", json={"scopes": ["inference"], "expires_in": "soon"}).status_code == 400


def test_a_key_revoked_through_the_api_is_401_at_once(keyed, admin):
    key = make_key(admin, "models:read")
    headers = {"authorization": f"Bearer {key['key']}"}
    assert httpx.get(keyed.url + "/v1/models", headers=headers).status_code == 200
    assert admin.delete(f"/v1/keys/{key['id']}").json()["revoked_at"] is not None
    assert httpx.get(keyed.url + "/v1/models", headers=headers).status_code == 401
    listed = {k["id"]: k for k in admin.get("/v1/keys").json()["keys"]}
    assert listed[key["id"]]["revoked_at"] and listed[key["id"]]["last_used_at"]
    assert all("key" not in k and "hash" not in k for k in listed.values())


def test_keys_made_and_revoked_from_the_cli_on_the_state_folder_take_effect_at_once(keyed):
    created = keyed.cli("keys", "create", "--local", "--scope", "models:read", "--name", "cli-made")
    value = created.stdout.strip().splitlines()[-1]
    key_id = created.stdout.split()[2]
    headers = {"authorization": f"Bearer {value}"}
    assert httpx.get(keyed.url + "/v1/models", headers=headers).status_code == 200  # the server saw the new key
    listing = keyed.cli("keys", "list", "--local").stdout
    assert key_id in listing and "cli-made" in listing and value not in listing
    keyed.cli("keys", "revoke", "--local", key_id)
    assert httpx.get(keyed.url + "/v1/models", headers=headers).status_code == 401
    # and against the running server, with the admin key of MODELYARD_API_KEY
    remote = keyed.cli("keys", "create", "--scope", "inference", "--models", "tiny", "--expires", "30d")
    assert "models tiny" in remote.stdout and "expires" in remote.stdout
    assert "No server answers" not in remote.stderr


def test_the_hash_is_stored_never_the_key(keyed, admin):
    import sqlite3

    value = make_key(admin, "inference")["key"]
    with sqlite3.connect(keyed.home / "modelyard.db") as db:
        dump = "\n".join(db.iterdump())
    assert value not in dump and ADMIN not in dump


# -- what runs code needs admin -----------------------------------------------------------------

def test_venvs_import_paths_and_remote_code_need_admin(keyed, admin, scoped_keys):
    register = keyed.http(api_key=scoped_keys["models:register"])
    launch = keyed.http(api_key=scoped_keys["models:launch"])
    with register, launch:
        venv = {"packages": ["demo-pkg"], "inherit_pip_config": True}
        for name, launcher, extra in (("pkgs", "echo-test", {"virtualenv": venv}),
                                      ("dotted", "my_flexible_model.launcher", {}),
                                      ("remote", "echo-test", {"launcher_args": {"trust_remote_code": True}})):
            response = register_flexible(register, name, launcher, **extra)
            assert response.status_code == 403 and "needs an admin key" in response.json()["detail"], name
        # the documentation's example, registered by an admin: its import path still needs admin to launch
        assert launch.post("/v1/models", json={"model_name": "my-flexible-model", "model_type": "flexible",
                                               "model_uid": "by-launcher"}).status_code == 403
        for options in ({"trust_remote_code": True}, {"model_kwargs": {"trust_remote_code": "true"}}):
            response = launch.post("/v1/models", json={"model_name": "tiny", "model_type": "LLM", **options})
            assert response.status_code == 403 and "trust_remote_code" in response.json()["detail"], options
        # a builtin embedding model whose repository code must run: the same rule
        response = launch.post("/v1/models", json={"model_name": "jina-embeddings-v2-base-en",
                                                   "model_type": "embedding", "trust_remote_code": True})
        assert response.status_code == 403 and "trust_remote_code" in response.json()["detail"]
        response = launch.post("/v1/models", json={"model_name": "tiny", "model_type": "LLM",
                                                   "virtual_env_packages": ["demo-pkg"]})
        assert response.status_code == 403 and "admin" in response.json()["detail"]
    response = admin.post("/v1/models", json={"model_name": "my-flexible-model", "model_type": "flexible",
                                              "model_uid": "by-admin"})
    assert response.status_code == 200, response.text
    admin.delete("/v1/models/by-admin")


def test_who_did_what(keyed, admin):
    admin_id = next(k["id"] for k in admin.get("/v1/keys").json()["keys"] if k["name"] == "MODELYARD_ADMIN_KEY")
    assert admin.get("/v1/models/tiny").json()["launched_by"] == admin_id
    assert admin.get("/v1/model_registrations/LLM/tiny").json()["registered_by"] == admin_id


# -- turning keys on, and binding beyond loopback -----------------------------------------------

def test_keys_turn_on_with_the_first_key(tmp_path):
    srv = Server(tmp_path / "home").start()
    try:
        assert httpx.get(srv.url + "/v1/cluster/auth").json() == {"auth": False}
        assert httpx.get(srv.url + "/v1/models").status_code == 200
        key = httpx.post(srv.url + "/v1/keys", json={"scopes": ["admin"]}, headers=JSON).json()["key"]
        assert httpx.get(srv.url + "/v1/cluster/auth").json() == {"auth": True}
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
    finally:
        srv.stop()


def serve_beyond_loopback(home, env, *extra):
    """`modelyard serve --host 0.0.0.0` with none of the developer's MODELYARD_* settings (the test
    only ever sends to 127.0.0.1)."""
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    process = subprocess.Popen([sys.executable, "-m", "modelyard", "serve", "--host", "0.0.0.0", "--port", str(port),
                                "--log-level", "warning", *extra], env={**base, "MODELYARD_HOME": str(home), **env},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, f"http://127.0.0.1:{port}"


def test_serving_beyond_loopback_needs_keys(tmp_path):
    process, _url = serve_beyond_loopback(tmp_path / "a", {})
    out, _ = process.communicate(timeout=60)
    assert process.returncode != 0 and "will not serve on 0.0.0.0 without API keys" in out
    assert "modelyard keys create --scope admin" in out and "--insecure-no-auth" in out
    # the README's way: make the first key with no server running, then serve
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    made = subprocess.run([sys.executable, "-m", "modelyard", "keys", "create", "--scope", "admin"], text=True,
                          env={**base, "MODELYARD_HOME": str(tmp_path / "a"),
                               "MODELYARD_ENDPOINT": f"http://127.0.0.1:{free_port()}"}, capture_output=True)
    assert made.returncode == 0 and "using the state folder" in made.stderr, made.stderr
    for home, env, args in (("a", {}, ()), ("b", {"MODELYARD_ADMIN_KEY": ADMIN}, ()),
                            ("c", {}, ("--insecure-no-auth",))):
        process, url = serve_beyond_loopback(tmp_path / home, env, *args)
        try:
            assert wait_until(lambda u=url: _answers(u), timeout=30), process.poll()
            assert httpx.get(url + "/v1/cluster/auth").json()["auth"] is (not args)
        finally:
            process.terminate()
            process.wait(30)


def _answers(url):
    try:
        return httpx.get(url + "/status", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
