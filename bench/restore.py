"""Bench: how soon a model answers again after its server restarts or its worker is killed.

    .venv/bin/python bench/restore.py [--rounds 7]

A trivial flexible model (bench/trivial_model.py) is launched once; then, round after round:
- restore: the server is stopped (SIGTERM in even rounds, SIGKILL in odd ones), and the time is
  taken from starting `modelyard serve` again on the same state to the restored model's first
  answer, next to the same server's start-to-/status time in the same round (the part of it that
  is the server's own start, not the restore);
- restart: the model's worker gets `kill -9`, and the time is taken from the kill to the model's
  next answer (the client retries at once on each 503).
Medians and ranges of the rounds. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import httpx
from request_path import BODY, JSON, PY, bench_env, free_port, launch_echo


def answering(http: httpx.Client, deadline: float) -> float:
    """Retry the model's call until it answers; the moment it did."""
    while time.perf_counter() < deadline:
        try:
            if http.post("/v1/flexible/infers", content=BODY, headers=JSON).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise TimeoutError("the model did not answer again")


def serve(env: dict[str, str], port: int, restoring: bool = True) -> tuple[subprocess.Popen, float, float]:
    """Start the server; (process, seconds to /status, seconds to the model's answer)."""
    started = time.perf_counter()
    proc = subprocess.Popen([PY, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    up = None
    while up is None:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if http.get("/status").status_code == 200:
                up = time.perf_counter()
        except httpx.TransportError:
            time.sleep(0.005)
    answered = answering(http, started + 60) if restoring else up
    return proc, up - started, answered - started


def summary(values: list[float]) -> dict:
    return {"median_s": round(statistics.median(values), 3), "range_s": [round(min(values), 3),
                                                                          round(max(values), 3)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = bench_env("modelyard-restore-bench-")
    port = free_port()
    proc, _, _ = serve(env, port, restoring=False)
    launch_echo(port)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    to_status, to_restored, to_restarted = [], [], []
    try:
        for round_no in range(args.rounds):
            proc.send_signal(signal.SIGKILL if round_no % 2 else signal.SIGTERM)
            proc.wait(30)
            time.sleep(0.5)  # the killed server's workers leave
            proc, up, answered = serve(env, port)
            to_status.append(up)
            to_restored.append(answered)
            pid = http.get("/v1/models/echo").json()["pid"]
            killed = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            to_restarted.append(answering(http, killed + 60) - killed)
            assert http.get("/v1/models/echo").json()["pid"] != pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(json.dumps({"serve_to_status": summary(to_status), "serve_to_restored_model_answering": summary(to_restored),
                      "worker_kill_9_to_answering": summary(to_restarted), "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
