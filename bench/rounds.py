"""Shared by the benches that compare a served rate with an in-process one: setups measured in
turns, round after round, in a rotating order (a slow spell of the machine then hits them alike),
and ratios as the medians of the rounds' own ratios."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from request_path import free_port, start

BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def modelyard_server(home: Path) -> Iterator[tuple[int, httpx.Client]]:
    """A `modelyard serve` of this tree with its own home: its port and a client; stopped after."""
    port = free_port()
    server, _ = start([sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"],
                      {**os.environ, "MODELYARD_HOME": str(home)}, port)
    try:
        yield port, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def interleaved(setups: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each setup's rate per round, after one warm-up run of each."""
    for setup in setups.values():
        setup()
    rates: dict[str, list[float]] = {name: [] for name in setups}
    names = list(setups)
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:  # no setup always goes first
            rates[name].append(setups[name]())
    return rates


def ratio(rates: dict[str, list[float]], served: str, baseline: str) -> dict[str, object]:
    """The median of the rounds' served/baseline ratios, and their range."""
    ratios = [s / b for s, b in zip(rates[served], rates[baseline], strict=True)]
    return {f"ratio_{served}": round(statistics.median(ratios), 3),
            f"ratio_{served}_range": [round(min(ratios), 3), round(max(ratios), 3)]}


def calls_per_second(call: Callable[[], object], seconds: float, pause: float = 0.0) -> float:
    """Calls per second of `call` in a loop; with `pause`, seconds slept after each call are not counted."""
    count, paused, started = 0, 0.0, time.perf_counter()
    while time.perf_counter() - started - paused < seconds:
        call()
        count += 1
        if pause:
            before = time.perf_counter()
            time.sleep(pause)
            paused += time.perf_counter() - before
    return count / (time.perf_counter() - started - paused)


def served_rps(port: int, path: str, body: dict, concurrency: int, seconds: float) -> float:
    """Requests/s of POST `path` with `body` at `concurrency` (bench/loadgen.py)."""
    out = subprocess.run([sys.executable, str(BENCH / "loadgen.py"), "127.0.0.1", str(port), path, json.dumps(body),
                          str(concurrency), str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["rps"]
