"""Test support: a real modelyard server in a subprocess, on a free port, with its own home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx

from modelyard.testing import server as testing_server
from modelyard.testing.server import free_port, wait_until  # noqa: F401  (the tests import them from here)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FLEXIBLE_FIXTURES = TESTS / "fixtures" / "flexible"
# The test fixtures' launcher modules (no_such_module: a launcher that fails to import); the
# documentation's example (my_flexible_model) is allowed the README's way, with --allow-launcher.
FIXTURE_LAUNCHERS = "edge_models.*,lifecycle_models.*,venv_models.*,echo_model.*,no_such_module.*"
JSON = {"content-type": "application/json"}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def bridged_venv(venv: Path, *packages: Path) -> Path:
    """A throwaway virtualenv that sees this environment's packages (modelyard included) through a
    `.pth` bridge, so installing `packages` into it (without their dependencies) costs no download
    and touches nothing of the developer's environment. Its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "_modelyard_test_bridge.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", *map(str, packages)],
                   check=True, capture_output=True, text=True)
    return python


class Server(testing_server.Server):
    """modelyard.testing's server, which also finds the tests' flexible fixtures and may launch them."""

    def __init__(self, home: Path, *, env: dict[str, str] | None = None, **kwargs):
        fixtures = {"PYTHONPATH": str(FLEXIBLE_FIXTURES), "MODELYARD_ALLOWED_LAUNCHERS": FIXTURE_LAUNCHERS}
        super().__init__(home, env={**fixtures, **(env or {})}, **kwargs)


def flexible_server(home: Path, name: str, launcher: str, env: dict[str, str] | None = None) -> Server:
    """A started server with flexible model `name` registered to `launcher`."""
    server = Server(home, env=env).start()
    with server.http() as http:
        register_flexible(http, name, launcher)
    return server


def register_flexible(http: httpx.Client, name: str, launcher: str, launcher_args: dict | None = None,
                      persist: bool = False, **extra) -> httpx.Response:
    spec = {"model_name": name, "launcher": launcher, "model_uri": "/path/to/model",
            "launcher_args": json.dumps(launcher_args or {}), **extra}
    return http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec), "persist": persist})


def llm_template(name, uri, **extra):
    """Xinference's version-2 custom LLM template, filled in."""
    return {"version": 2, "context_length": 256, "model_name": name, "model_lang": ["en"],
            "model_ability": ["generate", "chat"], "model_description": "tiny test model", "model_family": "tiny",
            "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_001", "quantization": "none",
                             "model_id": None, "model_hub": "huggingface", "model_uri": uri, "model_revision": None}],
            "chat_template": None, "stop_token_ids": None, "stop": None, "reasoning_start_tag": None,
            "reasoning_end_tag": None, "cache_config": None,
            "virtualenv": {"packages": [], "inherit_pip_config": True, "index_url": None, "extra_index_url": None,
                           "find_links": None, "trusted_host": None, "no_build_isolation": None},
            "is_builtin": False, **extra}


def launch_tiny_llm(http: httpx.Client, model_dir: str, name: str = "tiny") -> None:
    """Register the tiny test LLM under `name` and launch it with the transformers engine."""
    spec = json.dumps(llm_template(name, f"file://{model_dir}"))
    assert http.post("/v1/model_registrations/LLM", json={"model": spec}).status_code == 200
    response = http.post("/v1/models", json={"model_name": name, "model_type": "LLM",
                                             "model_engine": "transformers"}, timeout=300)
    assert response.status_code == 200, response.text
