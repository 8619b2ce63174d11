"""The attacks of the security review, each refused with a 4xx and running nothing; and the
allowed counterparts of each, which work.

Every attack carries a payload that writes a marker file if any of its code runs; a refusal
is only a pass when the marker is never written.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from wheels import build_wheel

from helpers import JSON, Server, register_flexible, wait_until

SECRET = "my-secret-admin-key-for-the-worker-environ-test"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    good = root / "good-wheels"
    build_wheel(good, "demo-pkg", "1.0")
    build_wheel(good, "demo-pkg", "2.0")
    # a package whose build runs code: its in-tree build backend writes the marker when imported,
    # and needs nothing from an index, so an offline build runs it
    evil = root / "evil-1.0"
    evil.mkdir()
    (evil / "pyproject.toml").write_text('[project]\nname = "evil"\nversion = "1.0"\n[build-system]\n'
                                         'requires = []\nbuild-backend = "evil_backend"\nbackend-path = ["."]\n')
    (evil / "evil_backend.py").write_text(f"open({str(root / 'marker')!r}, 'w').write('built')\n")
    evil_wheels = root / "evil-wheels"
    evil_wheels.mkdir()
    subprocess.run(["tar", "czf", str(evil_wheels / "evil-1.0.tar.gz"), "-C", str(root), "evil-1.0"], check=True)
    return {"root": root, "good": good, "evil": evil, "evil_wheels": evil_wheels, "marker": root / "marker"}


@pytest.fixture(scope="module")
def sec(dirs):
    srv = Server(dirs["root"] / "home", args=("--cors-origins", "https://app.example"), api_key=SECRET, env={
        "UV_OFFLINE": "1",
        "MODELYARD_ALLOWED_LAUNCHERS": "security_models.*,venv_models.*",
        "MODELYARD_ALLOWED_ENVS": "MY_MODEL_SETTING,LD_PRELOAD,PYTHONPATH",
        "MODELYARD_ALLOWED_PACKAGE_SOURCES": str(dirs["good"]),
        # the operator's own environment: an import of antigravity would run it
        "BROWSER": f"sh -c 'echo browser > {dirs['marker']}' %s",
        "MODELYARD_ADMIN_KEY": SECRET, "MODELYARD_API_KEY": SECRET,
    })
    # no pip configuration: what the server's pip config names would count as allowed
    srv.env = {k: v for k, v in srv.env.items() if not k.startswith("PIP_")}
    srv.env["PIP_CONFIG_FILE"] = os.devnull
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(sec):
    with sec.http() as client:
        yield client


@pytest.fixture(scope="module")
def marking(http):
    """A registered, allowed flexible model that marks when it runs."""
    assert register_flexible(http, "marking", "security_models.launcher").status_code == 200
    return "marking"


def refused(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, (fragment, detail)
    return detail


def assert_nothing_ran(dirs):
    time.sleep(0.5)  # anything started would have written by now
    assert not dirs["marker"].exists(), dirs["marker"].read_text()


EXPLOIT = {"PYTHONWARNINGS": "all:0:antigravity.x:0:0"}


def exploit_envs(dirs):
    return {**EXPLOIT, "BROWSER": f"sh -c 'echo exploit > {dirs['marker']}' %s"}


def test_the_exploit_payload_is_live(dirs):
    """The payload of the review's one-request exploit runs a command in any Python it reaches."""
    subprocess.run([sys.executable, "-c", "pass"], env={**os.environ, **exploit_envs(dirs)}, timeout=30)
    assert wait_until(dirs["marker"].exists, timeout=5)
    dirs["marker"].unlink()


def test_the_package_payload_is_live(dirs, tmp_path):
    """uv building the evil package, by path or from its find-links folder, runs its code."""
    from modelyard.venv import uv_binary

    env = {**os.environ, "UV_OFFLINE": "1", "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([uv_binary(), "venv", "--quiet", str(tmp_path / "env")], env=env, check=True)
    for source in ([str(dirs["evil"])], ["--find-links", str(dirs["evil_wheels"]), "evil"]):
        subprocess.run([uv_binary(), "pip", "install", "--no-config", "--python", str(tmp_path / "env/bin/python"),
                        "--no-deps", *source], env=env, capture_output=True)
        assert dirs["marker"].read_text() == "built"
        dirs["marker"].unlink()


# -- environment variables ----------------------------------------------------------------------

@pytest.mark.parametrize("model", [("qwen2.5-instruct", "LLM"), ("marking", "flexible")], ids=["builtin", "registered"])
def test_the_one_request_envs_exploit_is_refused(http, dirs, marking, model):
    name, model_type = model
    response = http.post("/v1/models", json={"model_name": name, "model_type": model_type,
                                             "envs": exploit_envs(dirs)})
    refused(response, 403, "envs: ", "PYTHON*", "MODELYARD_ALLOWED_ENVS")
    assert_nothing_ran(dirs)
    assert http.get("/v1/models").json()["data"] == []


@pytest.mark.parametrize("name", ["LD_PRELOAD", "PYTHONPATH", "BROWSER", "MODELYARD_ADMIN_KEY", "ld_preload"])
def test_code_loading_variables_are_refused_even_when_listed(http, dirs, marking, name):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                             "envs": {name: str(dirs["root"] / "evil.so")}})
    refused(response, 403, name, "never accepted", "even when MODELYARD_ALLOWED_ENVS lists them")


def test_an_unlisted_variable_names_the_setting(http, marking):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                             "envs": {"SOME_SETTING": "1"}})
    refused(response, 403, "SOME_SETTING", "add SOME_SETTING to MODELYARD_ALLOWED_ENVS")
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                             "envs": {"not a name": "1"}})
    refused(response, 400, "not an environment variable name")


def test_a_listed_variable_and_the_safe_ones_reach_the_worker(http, marking):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible", "model_uid": "envs-ok",
                                             "envs": {"MY_MODEL_SETTING": "42", "OMP_NUM_THREADS": "1"}})
    assert response.status_code == 200, response.text
    environ = http.post("/v1/flexible/infers", json={"model": "envs-ok"}).json()["environ"]
    assert environ["MY_MODEL_SETTING"] == "42" and environ["OMP_NUM_THREADS"] == "1"
    http.delete("/v1/models/envs-ok")


def test_a_worker_inherits_no_key(http, sec, marking):
    assert http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                         "model_uid": "keyless"}).status_code == 200
    worker = http.get("/v1/models/keyless").json()["pid"]
    server = http.get("/status").json()["pid"]

    def environ(pid):
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        return dict(item.decode().split("=", 1) for item in raw if b"=" in item)

    assert environ(server)["MODELYARD_ADMIN_KEY"] == SECRET  # the server has them ...
    worker_env = environ(worker)
    assert "MODELYARD_ADMIN_KEY" not in worker_env and "MODELYARD_API_KEY" not in worker_env  # ... its worker not
    assert SECRET not in Path(f"/proc/{worker}/environ").read_text(errors="replace")
    assert worker_env["MODELYARD_MODEL_UID"] == "keyless"
    http.delete("/v1/models/keyless")


# -- flexible launchers -------------------------------------------------------------------------

@pytest.mark.parametrize("launcher", ["antigravity.geohash", "antigravity:geohash"])
def test_an_import_path_launcher_must_be_allowed(http, dirs, launcher):
    refused(register_flexible(http, "geohash", launcher), 403, "MODELYARD_ALLOWED_LAUNCHERS",
            "'antigravity.geohash'", "--allow-launcher")
    assert_nothing_ran(dirs)
    assert http.get("/v1/model_registrations/flexible/geohash").status_code == 404


def test_a_bad_launcher_with_a_browser_env_is_refused(http, dirs, marking):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                             "envs": {"BROWSER": f"sh -c 'echo env > {dirs['marker']}' %s"}})
    refused(response, 403, "BROWSER")
    assert_nothing_ran(dirs)


def test_an_allowed_pattern_launches(http, marking):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible", "model_uid": "allowed"})
    assert response.status_code == 200, response.text
    assert http.post("/v1/flexible/infers", json={"model": "allowed"}).status_code == 200
    http.delete("/v1/models/allowed")


def test_a_launch_checks_its_registration_again(dirs, tmp_path):
    """A persisted registration made while its launcher was allowed no longer launches once it is not."""
    home = tmp_path / "home"
    srv = Server(home, env={"MODELYARD_ALLOWED_LAUNCHERS": "security_models.*"}).start()
    with srv.http() as http:
        args = {"load_marker": str(dirs["marker"])}
        assert register_flexible(http, "kept", "security_models.launcher", args, persist=True).status_code == 200
    srv.stop()
    srv = Server(home, env={"MODELYARD_ALLOWED_LAUNCHERS": ""}).start()
    try:
        with srv.http() as http:
            refused(http.post("/v1/models", json={"model_name": "kept", "model_type": "flexible"}), 403,
                    "'security_models.launcher'", "MODELYARD_ALLOWED_LAUNCHERS")
            assert_nothing_ran(dirs)
    finally:
        srv.stop()


# -- virtualenv package sources -----------------------------------------------------------------

def _venv(**settings):
    return {"packages": [], "inherit_pip_config": False, "index_url": None, "extra_index_url": None,
            "find_links": None, "trusted_host": None, "no_build_isolation": None, **settings}


SOURCES = {
    "url": lambda d: _venv(packages=["evil @ http://127.0.0.1:9/evil-1.0.tar.gz"]),
    "local path": lambda d: _venv(packages=[f"evil @ file://{d['evil']}"]),
    "bare local path": lambda d: _venv(packages=[str(d["evil"])]),
    "find_links": lambda d: _venv(packages=["evil"], find_links=str(d["evil_wheels"])),
    "index_url": lambda d: _venv(packages=["evil"], index_url="http://127.0.0.1:9/simple"),
    "extra_index_url": lambda d: _venv(packages=["evil"], extra_index_url=["http://127.0.0.1:9/simple"]),
    "trusted_host": lambda d: _venv(packages=["demo-pkg"], find_links=str(d["good"]), trusted_host="evil.example"),
}


@pytest.mark.parametrize("source", SOURCES)
def test_a_package_source_must_be_allowed_at_registration(http, dirs, source):
    response = register_flexible(http, "evil-venv", "security_models.launcher", virtualenv=SOURCES[source](dirs))
    refused(response, 403, "MODELYARD_ALLOWED_PACKAGE_SOURCES")
    assert_nothing_ran(dirs)
    assert http.get("/v1/model_registrations/flexible/evil-venv").status_code == 404


@pytest.mark.parametrize("launch", [
    lambda d: {"virtual_env_packages": ["evil @ http://127.0.0.1:9/evil-1.0.tar.gz"]},
    lambda d: {"virtual_env_packages": [f"evil @ file://{d['evil']}"]},
    lambda d: {"virtual_env_packages": ["evil"], "virtual_env_find_links": [str(d["evil_wheels"])]},
], ids=["url", "local path", "find_links"])
def test_a_package_source_must_be_allowed_at_launch(http, dirs, marking, launch):
    response = http.post("/v1/models", json={"model_name": marking, "model_type": "flexible", **launch(dirs)})
    refused(response, 403, "MODELYARD_ALLOWED_PACKAGE_SOURCES")
    assert_nothing_ran(dirs)
    assert http.get("/v1/models").json()["data"] == []


def test_a_listed_wheel_folder_works(http, dirs):
    venv = _venv(packages=["demo-pkg==1.0"], find_links=str(dirs["good"]))
    assert register_flexible(http, "good-venv", "venv_models.launcher", virtualenv=venv).status_code == 200
    response = http.post("/v1/models", json={"model_name": "good-venv", "model_type": "flexible"})
    assert response.status_code == 200, response.text
    seen = http.post("/v1/flexible/infers", json={"model": "good-venv", "args": ["demo_pkg"]}).json()
    assert seen["modules"]["demo_pkg"]["version"] == "1.0"
    http.delete("/v1/models/good-venv")
    # a wheel of the listed folder named directly, at launch
    wheel = dirs["good"] / "demo_pkg-2.0-py3-none-any.whl"
    response = http.post("/v1/models", json={"model_name": "good-venv", "model_type": "flexible",
                                             "virtual_env_packages": [f"demo-pkg @ file://{wheel}"]})
    assert response.status_code == 200, response.text
    seen = http.post("/v1/flexible/infers", json={"model": "good-venv", "args": ["demo_pkg"]}).json()
    assert seen["modules"]["demo_pkg"]["version"] == "2.0"
    http.delete("/v1/models/good-venv")


# -- the browser's way in -----------------------------------------------------------------------

@pytest.fixture
def running(http, marking):
    assert http.post("/v1/models", json={"model_name": marking, "model_type": "flexible",
                                         "model_uid": "running"}).status_code == 200
    yield "running"
    http.delete("/v1/models/running")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_refused(http, dirs, running, content_type):
    body = json.dumps({"model": running, "args": [str(dirs["marker"])]})
    headers = {"content-type": content_type} if content_type else {}
    refused(http.post("/v1/flexible/infers", content=body, headers=headers), 415, "Content-Type: application/json")
    assert_nothing_ran(dirs)
    # the same body as JSON runs the model: the marker would have shown a refusal that let it through
    assert http.post("/v1/flexible/infers", content=body, headers=JSON).status_code == 200
    assert dirs["marker"].read_text() == "called"
    dirs["marker"].unlink()


def test_a_multipart_post_is_refused(http, dirs, running):
    response = http.post("/v1/flexible/infers", data={"model": running}, files={"args": ("a.txt", b"x")})
    refused(response, 415, "multipart/form-data")


def test_a_cross_site_origin_cannot_launch(http, dirs, marking):
    body = {"model_name": marking, "model_type": "flexible", "model_uid": "from-a-page",
            "load_marker": str(dirs["marker"])}
    response = http.post("/v1/models", json=body, headers={"origin": "http://evil.example"})
    refused(response, 403, "'http://evil.example'", "--cors-origins")
    assert_nothing_ran(dirs)
    assert http.get("/v1/models/from-a-page").status_code == 404
    refused(http.post("/v1/models", json=body, headers={"origin": "null"}), 403)


def test_a_cross_site_origin_cannot_end_a_model_with_a_bodyless_request(http, dirs, running):
    page = {"origin": "http://evil.example"}
    refused(http.post(f"/v1/models/{running}/cancel", headers=page), 403, "--cors-origins")
    refused(http.delete(f"/v1/models/{running}", headers=page), 403)
    refused(http.post("/v1/virtualenvs/prune", headers=page), 403)
    assert http.get(f"/v1/models/{running}").json()["status"] == "READY"


def test_the_servers_own_pages_and_listed_origins_may_post(http, sec, dirs, running):
    own = http.post("/v1/flexible/infers", json={"model": running}, headers={"origin": sec.url})
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    listed = http.post("/v1/flexible/infers", json={"model": running}, headers={"origin": "https://app.example"})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == "https://app.example"
    preflight = http.options("/v1/flexible/infers", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
    other = http.options("/v1/flexible/infers", headers={"origin": "http://evil.example",
                                                         "access-control-request-method": "POST"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers


def test_no_cors_headers_unless_origins_are_named(server):
    """The shared server names no --cors-origins: no page gets CORS headers from it."""
    with server.http() as http:
        response = http.get("/v1/models", headers={"origin": "https://app.example"})
        assert response.status_code == 200
        assert not [h for h in response.headers if h.startswith("access-control-")]
        preflight = http.options("/v1/models", headers={"origin": "https://app.example",
                                                        "access-control-request-method": "POST"})
        assert not [h for h in preflight.headers if h.startswith("access-control-")]


def test_a_foreign_host_is_refused(sec, dirs, marking):
    rebound = sec.http()
    rebound.headers["host"] = f"attacker.example:{sec.port}"
    with rebound:
        refused(rebound.get("/status"), 421, "'attacker.example'", "--allowed-hosts")
        body = {"model_name": marking, "model_type": "flexible", "load_marker": str(dirs["marker"])}
        refused(rebound.post("/v1/models", json=body), 421)
    assert_nothing_ran(dirs)
    for host in (f"localhost:{sec.port}", f"127.0.0.1:{sec.port}", "127.0.0.2", f"[::1]:{sec.port}", "app.localhost"):
        assert httpx.get(sec.url + "/status", headers={"host": host}).status_code == 200, host


def test_allowed_hosts_are_answered(tmp_path):
    srv = Server(tmp_path / "home", args=("--allowed-hosts", "models.internal,*.lab.example")).start()
    try:
        for host, status in (("models.internal", 200), ("gpu1.lab.example:80", 200), ("lab.example", 421),
                             ("models.internal.evil", 421)):
            assert httpx.get(srv.url + "/status", headers={"host": host}).status_code == status, host
    finally:
        srv.stop()


def test_the_server_says_whom_it_trusts_at_start(server):
    """The shared server has no keys."""
    assert "without API keys: it trusts every user and program on this machine" in server.log()
