"""Bench: what a per-model virtualenv adds to a launch.

    .venv/bin/python bench/venv_launch.py [--rounds 5]

Launch time (POST /v1/models until READY) of the trivial flexible model with no env, with a warm
env (already built), and with a cold env (a new env installing one small local wheel, offline),
rounds interleaved, in one server. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

from request_path import free_port, start  # noqa: E402
from wheels import build_wheel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-venv-bench-"))
    wheels = work / "wheels"
    for i in range(args.rounds + 1):
        build_wheel(wheels, "bench-pkg", f"1.0.{i}")
    env = {**os.environ, "MODELYARD_HOME": str(work / "home"), "PYTHONPATH": str(BENCH), "UV_OFFLINE": "1",
           "MODELYARD_ALLOWED_LAUNCHERS": "trivial_model.*", "MODELYARD_ALLOWED_PACKAGE_SOURCES": str(wheels)}
    port = free_port()
    server, _ = start([sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"],
                      env, port)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    def register(name: str, packages: list[str]) -> None:
        venv = {"packages": packages, "inherit_pip_config": False, "find_links": str(wheels)}
        spec = {"model_name": name, "launcher": "trivial_model.launcher", "virtualenv": venv}
        http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()

    def timed_launch(name: str) -> float:
        t0 = time.perf_counter()
        response = http.post("/v1/models", json={"model_name": name, "model_type": "flexible", "model_uid": "m"})
        elapsed = time.perf_counter() - t0
        response.raise_for_status()
        http.delete("/v1/models/m").raise_for_status()
        return elapsed

    try:
        register("none", [])
        register("warm", ["bench-pkg==1.0.0"])
        timed_launch("warm")  # builds it once
        for i in range(1, args.rounds + 1):
            register(f"cold-{i}", [f"bench-pkg==1.0.{i}"])
        times: dict[str, list[float]] = {"none": [], "warm": [], "cold": []}
        for i in range(1, args.rounds + 1):
            times["none"].append(timed_launch("none"))
            times["warm"].append(timed_launch("warm"))
            times["cold"].append(timed_launch(f"cold-{i}"))
        med = {k: statistics.median(v) for k, v in times.items()}
        uv_version = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True,
                                    text=True).stdout.strip()
        print(json.dumps({
            "launch_no_env_s": round(med["none"], 3),
            "launch_warm_env_s": round(med["warm"], 3),
            "launch_cold_env_s": round(med["cold"], 3),
            "warm_env_adds_s": round(med["warm"] - med["none"], 3),
            "cold_env_adds_s": round(med["cold"] - med["none"], 3),
            "rounds": args.rounds,
            "uv": uv_version,
        }, indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
