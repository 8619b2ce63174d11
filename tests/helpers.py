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
FIXTURE_LAUNCHERS = "edge_models.*,lifecycle_models.*,venv_models.*,no_such_module.*"
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
                 args: tuple[str, ...] = ()):
        self.home = home
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

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)


def register_flexible(http: httpx.Client, name: str, launcher: str, launcher_args: dict | None = None,
                      persist: bool = False, **extra) -> httpx.Response:
    spec = {"model_name": name, "launcher": launcher, "model_uri": "/path/to/model",
            "launcher_args": json.dumps(launcher_args or {}), **extra}
    return http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec), "persist": persist})
