"""Bench: from a request naming an unloaded model to its answer.

    .venv/bin/python bench/unloaded_to_answer.py [--rounds 7]

A trivial flexible model (bench/trivial_model.py) is launched with `keep_alive: 0`, so each
request unloads it after its answer; each round waits until its worker is gone, then times one
request (which loads the model again and is answered), next to a request to a loaded model in the
same round (the request's own cost). Medians and ranges of the rounds. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from request_path import BODY, JSON, bench_env, free_port, serve
from restore import summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = bench_env("modelyard-unload-bench-")
    port = free_port()
    proc = serve(env, port)
    import httpx

    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    spec = {"model_name": "echo", "launcher": "trivial_model.launcher"}
    http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()
    for uid, keep_alive in (("napper", 0), ("awake", -1)):
        http.post("/v1/models", json={"model_name": "echo", "model_type": "flexible", "model_uid": uid,
                                      "keep_alive": keep_alive}).raise_for_status()
    loaded, unloaded = [], []
    body = json.loads(BODY)
    try:
        for _ in range(args.rounds):
            http.post("/v1/flexible/infers", json={**body, "model": "napper"}).raise_for_status()
            while http.get("/v1/models/napper").json()["status"] != "UNLOADED":
                time.sleep(0.01)
            time.sleep(0.5)  # its worker has left
            t0 = time.perf_counter()
            http.post("/v1/flexible/infers", content=json.dumps({**body, "model": "awake"}), headers=JSON
                      ).raise_for_status()
            loaded.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            answer = http.post("/v1/flexible/infers", json={**body, "model": "napper"})
            unloaded.append(time.perf_counter() - t0)
            answer.raise_for_status()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(json.dumps({"unloaded_request_to_answer": summary(unloaded), "loaded_request_to_answer": summary(loaded),
                      "rounds": args.rounds}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
