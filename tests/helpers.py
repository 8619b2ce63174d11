"""Test support: a real modelyard server in a subprocess, on a free port, with its own home."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FLEXIBLE_FIXTURES = TESTS / "fixtures" / "flexible"
# The test fixtures' launcher modules (no_such_module: a launcher that fails to import); the
# documentation's example (my_flexible_model) is allowed the README's way, with --allow-launcher.
FIXTURE_LAUNCHERS = "edge_models.*,lifecycle_models.*,venv_models.*,echo_model.*,no_such_module.*"
JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Server:
    """`python -m modelyard serve` in a subprocess."""

    def __init__(self, home: Path, *, python: str = sys.executable, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = (), api_key: str | None = None):
        self.home = home
        self.api_key = api_key  # what http() sends
        self.python = python
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MODELYARD_HOME": str(home), "PYTHONPATH": str(FLEXIBLE_FIXTURES),
                    "MODELYARD_ENDPOINT": self.url, "MODELYARD_ALLOWED_LAUNCHERS": FIXTURE_LAUNCHERS, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log_path = home / "server.log"

    def start(self, timeout: float = 30.0) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.python, "-m", "modelyard", "serve", "--port", str(self.port), "--log-level", "warning",
             *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/status", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `modelyard ARGS`; it finds this server through MODELYARD_ENDPOINT."""
        result = subprocess.run([self.python, "-m", "modelyard", *args], env=self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"modelyard {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def http(self, api_key: str | None = None) -> httpx.Client:
        key = api_key or self.api_key
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, timeout=60, headers=headers)


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
