"""Bench: the cost of the request path to a flexible model, against a bare FastAPI app.

    .venv/bin/python bench/request_path.py [--rounds 5] [--seconds 3] [--compare REV] [--keys] [--metrics-off]

Starts a modelyard server with a trivial flexible model and a bare FastAPI + uvicorn echo app
(same uvicorn settings), then measures requests/s and p50/p99 latency of POST /v1/flexible/infers
at concurrency 1 and 16 with a minimal asyncio client (loadgen.py), rounds interleaved, both
servers in the same run. Also: server start-to-ready time, idle RSS of the server and of a worker,
and the launch time of the trivial model. With `--compare REV`, the server of git revision REV
(checked out in a temporary worktree) is measured too, in the same rounds, so a change's cost is
its ratio next to REV's. With `--keys`, a third modelyard server has API keys on, and its requests
carry an inference key: the key check's cost is its ratio next to the keyless server's. With
`--metrics-off`, another server runs with MODELYARD_METRICS=0: `ratio_rps_metrics_on_over_off_c*`
is the metrics' cost, next to `spread_ratio_rps_c*` (the range of the metrics-on server's ratio to
the bare app over the rounds: the run-to-run spread).
Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
JSON = {"content-type": "application/json"}
PY = sys.executable
BODY = json.dumps({"model": "echo", "args": ["hello world"]})


def bench_env(prefix: str) -> dict[str, str]:
    """A server environment with a fresh home that may launch the trivial model."""
    return {**os.environ, "MODELYARD_HOME": tempfile.mkdtemp(prefix=prefix), "PYTHONPATH": str(BENCH),
            "MODELYARD_ALLOWED_LAUNCHERS": "trivial_model.*"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/status", timeout=0.5).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            time.sleep(0.005)
    raise SystemExit(f"{url} did not start")


def start(cmd: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, wait_ready(f"http://127.0.0.1:{port}", proc) - t0


def load(port: int, concurrency: int, seconds: float, key: str | None = None) -> dict:
    headers = [f"Authorization: Bearer {key}"] if key else []
    out = subprocess.run([PY, str(BENCH / "loadgen.py"), "127.0.0.1", str(port), "/v1/flexible/infers", BODY,
                          str(concurrency), str(seconds), *headers], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def serve(env: dict[str, str], port: int) -> subprocess.Popen:
    proc, _ = start([PY, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"], env, port)
    return proc


def launch_echo(port: int, key: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=headers)
    spec = {"model_name": "echo", "launcher": "trivial_model.launcher"}
    http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()
    http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible"}).raise_for_status()
    assert http.post("/v1/flexible/infers", content=BODY, headers=JSON).json() == {"echo": "hello world"}
    return http


def worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="modelyard-rev-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV's server, interleaved")
    parser.add_argument("--keys", action="store_true", help="also measure a server with API keys on")
    parser.add_argument("--metrics-off", action="store_true", help="also measure a server with metrics off")
    args = parser.parse_args()

    env = bench_env("modelyard-bench-")
    my_port, bare_port = free_port(), free_port()
    starts = []
    for _ in range(3):  # start-to-ready, median of three cold starts
        proc, ready = start([PY, "-m", "modelyard", "serve", "--port", str(my_port), "--log-level", "warning"],
                            env, my_port)
        starts.append(ready)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    server = serve(env, my_port)
    bare, _ = start([PY, str(BENCH / "echo_app.py"), str(bare_port)], env, bare_port)
    setups: list[tuple[str, int, str | None]] = [("bare", bare_port, None), ("modelyard", my_port, None)]
    procs = [server, bare]
    tree = None
    report: dict = {}
    try:
        if args.compare:
            tree = worktree(args.compare)
            rev_port = free_port()
            rev_env = {**env, "MODELYARD_HOME": tempfile.mkdtemp(prefix="modelyard-bench-rev-"),
                       "PYTHONPATH": os.pathsep.join([str(tree / "core/src"), str(tree / "server/src"), str(BENCH)])}
            procs.append(serve(rev_env, rev_port))
            launch_echo(rev_port)
            setups.append((f"rev_{args.compare}", rev_port, None))
        if args.keys:
            keys_port, admin = free_port(), "my-bench-admin-key-0123456789abcdef"
            keys_env = {**env, "MODELYARD_HOME": tempfile.mkdtemp(prefix="modelyard-bench-keys-"),
                        "MODELYARD_ADMIN_KEY": admin}
            procs.append(serve(keys_env, keys_port))
            keyed = launch_echo(keys_port, admin)
            inference = keyed.post("/v1/keys", json={"scopes": ["inference"]}).json()["key"]
            setups.append(("modelyard_keys", keys_port, inference))
        if args.metrics_off:
            off_port = free_port()
            off_env = {**env, "MODELYARD_HOME": tempfile.mkdtemp(prefix="modelyard-bench-nometrics-"),
                       "MODELYARD_METRICS": "0"}
            procs.append(serve(off_env, off_port))
            launch_echo(off_port)
            setups.append(("modelyard_metrics_off", off_port, None))
        http = launch_echo(my_port)
        launches = []
        for i in range(3):
            t0 = time.perf_counter()
            http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible",
                                          "model_uid": f"launch-{i}"}).raise_for_status()
            launches.append(time.perf_counter() - t0)
            http.delete(f"/v1/models/launch-{i}").raise_for_status()
        worker_pid = http.get("/v1/models/echo").json()["pid"]
        time.sleep(1)
        report["server_start_to_ready_s"] = statistics.median(starts)
        report["launch_trivial_model_s"] = statistics.median(launches)
        report["idle_rss_server_mib"] = rss_mib(server.pid)
        report["idle_rss_worker_mib"] = rss_mib(worker_pid)
        report["idle_rss_bare_app_mib"] = rss_mib(bare.pid)

        for _name, port, key in setups:  # warm each up
            load(port, 4, 1.0, key)
        results: dict[tuple[str, int], list[dict]] = {}
        for round_no in range(args.rounds):
            order = setups[round_no % len(setups):] + setups[:round_no % len(setups)]  # no setup always goes first
            for concurrency in (1, 16):
                for name, port, key in order:
                    results.setdefault((name, concurrency), []).append(load(port, concurrency, args.seconds, key))
        for (name, concurrency), runs in sorted(results.items()):
            report[f"{name}_c{concurrency}"] = {
                "rps": round(statistics.median(r["rps"] for r in runs), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
                "errors": sum(r["errors"] for r in runs),
            }
        for name, _port, _key in setups[1:]:
            prefix = "ratio_rps" if name == "modelyard" else f"ratio_rps_{name}"
            for concurrency in (1, 16):
                # the median of each round's ratio: a round's two setups ran back to back
                ratios = [m["rps"] / b["rps"] for m, b in zip(results[(name, concurrency)],
                                                             results[("bare", concurrency)], strict=True)]
                report[f"{prefix}_c{concurrency}"] = round(statistics.median(ratios), 3)
                if name == "modelyard":
                    report[f"spread_ratio_rps_c{concurrency}"] = [round(min(ratios), 3), round(max(ratios), 3)]
        if args.metrics_off:
            for concurrency in (1, 16):
                ratios = [on["rps"] / off["rps"] for on, off in zip(results[("modelyard", concurrency)],
                                                                     results[("modelyard_metrics_off", concurrency)],
                                                                     strict=True)]
                report[f"ratio_rps_metrics_on_over_off_c{concurrency}"] = round(statistics.median(ratios), 3)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if tree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
