"""A real modelyard server for tests: `modelyard serve` in a subprocess, on a free port, with a
home of its own, and the calls a test makes of it (launch a model, read its log).

    server = Server(tmp_path / "home").start()
    uid = server.launch("LLM", registration, engine="my-engine")   # registration: a dict
    ...
    server.stop()

It needs modelyard-server installed beside modelyard-core.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_venv_dir() -> str:
    """Where a test's servers keep the models' envs (`MODELYARD_VENV_DIR`): `MODELYARD_TEST_VENV_DIR`,
    else `~/.cache/modelyard/test-virtualenvs`. Envs that carry a torch of their own take a minute
    and gigabytes to build: once per machine, not once per test run (their keys differ when what
    they are built from differs, so a stale one is never used)."""
    given = os.environ.get("MODELYARD_TEST_VENV_DIR")
    path = Path(given).expanduser() if given else Path.home() / ".cache" / "modelyard" / "test-virtualenvs"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def planned_env_python(virtualenv: dict[str, Any] | None, launcher: str, extra_packages: tuple[str, ...] = (),
                       venv_dir: str | None = None) -> Path:
    """The python of the env the server plans for a flexible model with this `virtualenv` section,
    `launcher` and launch-time `extra_packages` (under `venv_dir`, default `shared_venv_dir()`): to
    run a fixture builder with a model's own libraries (ultralytics, say) once the server has built
    its env. Planned here as the server plans it, so it exists only if both agree."""
    from modelyard import venv
    from modelyard.plugins import get_plugins
    from modelyard.types import VirtualEnvSettings

    settings = VirtualEnvSettings.model_validate(virtualenv) if virtualenv else None
    requirements = get_plugins().launcher(launcher).requirements
    spec = venv.plan(settings, extra_packages=extra_packages, requirements=requirements)
    if spec is None:
        return Path(sys.executable)  # the server's environment has everything
    return Path(venv_dir or shared_venv_dir()) / spec.key / "bin" / "python"


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
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
        self.home = Path(home)
        self.api_key = api_key  # what http() sends
        self.python = python
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MODELYARD_HOME": str(self.home), "MODELYARD_ENDPOINT": self.url, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.log_path = self.home / "server.log"

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
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # a test's server never outlives it
            self.process.wait()
            raise

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

    def register(self, model_type: str, registration: dict[str, Any]) -> None:
        """Register `registration` (a model of `model_type`), or fail the test with the server's answer."""
        with self.http() as http:
            registered = http.post(f"/v1/model_registrations/{model_type}", json={"model": json.dumps(registration)})
        if registered.status_code != 200:
            raise AssertionError(f"registering {registration.get('model_name')!r} failed: {registered.text}")

    def launch(self, model_type: str, registration: dict[str, Any], engine: str | None = None,
               timeout: float = 300, **options: Any) -> str:
        """Register `registration` (a model of `model_type`) and launch it; its uid."""
        self.register(model_type, registration)
        with self.http() as http:
            body = {"model_name": registration["model_name"], "model_type": model_type, **options}
            if engine:
                body["model_engine"] = engine
            launched = http.post("/v1/models", json=body, timeout=timeout)
            if launched.status_code != 200:
                raise AssertionError(f"launching {registration.get('model_name')!r} failed: {launched.text}\n"
                                     f"{self.log()}")
            return launched.json()["model_uid"]

    def model_log(self, uid: str, lines: int = 1000) -> str:
        """The last `lines` lines of a launched model's worker log."""
        with self.http() as http:
            return http.get(f"/v1/models/{uid}/logs", params={"lines": lines}).json()["lines"]
