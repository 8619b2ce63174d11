"""Bench: the server-to-worker link alone (no HTTP), in calls per second and microseconds per call.

    .venv/bin/python bench/worker_link.py [--calls 20000]

Spawns one worker for the trivial flexible model through the local backend and calls `infer`
over the link: one call at a time (round-trip latency) and 16 at a time (throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
os.environ["PYTHONPATH"] = str(BENCH)

from modelyard_server.local_backend import LocalProcessBackend  # noqa: E402


async def main(calls: int) -> dict:
    backend = LocalProcessBackend(Path(tempfile.mkdtemp(prefix="modelyard-link-")))
    worker = await backend.spawn("echo", on_progress=lambda *a: None)
    await worker.launch({"model_uid": "echo", "model_type": "flexible", "model_name": "echo",
                         "registration": {"model_name": "echo", "launcher": "trivial_model.launcher"},
                         "model_engine": None, "model_path": None, "kwargs": {}})
    report = {}
    try:
        for _ in range(500):
            await worker.call("infer", ["warm"], {})
        t0 = time.perf_counter()
        for _ in range(calls):
            await worker.call("infer", ["hello world"], {})
        sequential = time.perf_counter() - t0
        report["sequential_us_per_call"] = round(sequential / calls * 1e6, 1)
        report["sequential_calls_per_s"] = round(calls / sequential)

        async def lane(n: int) -> None:
            for _ in range(n):
                await worker.call("infer", ["hello world"], {})

        t0 = time.perf_counter()
        await asyncio.gather(*(lane(calls // 16) for _ in range(16)))
        concurrent = time.perf_counter() - t0
        report["concurrency16_calls_per_s"] = round(calls // 16 * 16 / concurrent)
    finally:
        await worker.stop(5)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    import uvloop

    print(json.dumps(uvloop.run(main(args.calls)), indent=2))
