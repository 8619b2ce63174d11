"""Shared by the benches that put modelyard's OpenAI routes next to another OpenAI server on the
same model (llama-cpp-python's, vLLM's): a raw HTTP/1.1 streaming client over kept-alive
connections (as the openai SDK keeps them), and rounds in which the servers take turns request by
request (by batches of `concurrency`), so a slow spell of the machine hits them alike. Ratios are
the medians of the rounds' own ratios, with their quartiles; tokens are counted from each stream
after its clock stops."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import time

import httpx
from llm_stream import run_client

from modelyard.processes import process_tree

FIRST_TOKEN = re.compile(rb'"content":\s*"[^"]')  # a delta with text: not the role chunk


def streamed_tokens(body: bytes) -> int:
    """The tokens a stream carried: its usage where it reports one (modelyard), else its chunks with
    text (llama_cpp.server sends one per token and no usage)."""
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: {")]
    for event in reversed(events):
        if b'"usage"' in event:
            usage = json.loads(event).get("usage")
            if usage:
                return usage["completion_tokens"]
    return sum(1 for event in events if FIRST_TOKEN.search(event))


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not start")


class Connection:
    """One kept-alive HTTP/1.1 connection, as the openai SDK keeps them."""

    def __init__(self, port: int, sampling: dict):
        self.port, self.sampling = port, sampling

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self) -> None:
        self.writer.close()

    async def stream(self, model: str, messages, max_tokens: int) -> tuple[float, float, bytes]:
        """One streamed chat completion: its seconds, seconds to the first token, and the raw body."""
        body = json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True,
                           **self.sampling}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        t0 = time.perf_counter()
        self.writer.write(head + body)
        first, buffer = None, b""
        while not buffer.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked response
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection mid-response")
            buffer += data
            if first is None and FIRST_TOKEN.search(buffer):
                first = time.perf_counter() - t0
        return time.perf_counter() - t0, first, buffer


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def compare(servers: dict[str, tuple[int, dict]], model: str, prompts: list, max_tokens: int, rounds: int,
            seconds: float, concurrencies: tuple[int, ...], baseline: str,
            exclusive: dict[str, int] | None = None) -> dict[str, object]:
    """Streamed tokens/s of each server (port, its sampling fields) at each concurrency, rounds
    interleaved; TTFT at concurrency 1; each server's ratio to `baseline`. With `exclusive` (a
    server's root process id), the servers whose turn it is not are stopped (SIGSTOP) meanwhile:
    engines that pin their threads to the same cores and poll when idle would otherwise slow the
    one whose turn it is."""
    trees = {name: process_tree(pid) for name, pid in (exclusive or {}).items()}

    def turn_of(name: str) -> None:
        for other, pids in trees.items():
            if other != name:
                signal_all(pids, signal.SIGSTOP)
        signal_all(trees.get(name, []), signal.SIGCONT)
    rates: dict[str, list[float]] = {f"{s}_c{c}": [] for c in concurrencies for s in servers}
    ttft: dict[str, list[float]] = {s: [] for s in servers}

    async def paired_round(concurrency: int, seconds: float) -> None:
        connections = {name: [await Connection(port, sampling).open() for _ in range(concurrency)]
                       for name, (port, sampling) in servers.items()}
        spent = dict.fromkeys(servers, 0.0)
        tokens = dict.fromkeys(servers, 0)
        names = list(servers)
        started, turn = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            for name in names[turn % len(names):] + names[:turn % len(names)]:  # none always goes first
                turn_of(name)
                t0 = time.perf_counter()
                results = await asyncio.gather(*(c.stream(model, prompts[i % len(prompts)], max_tokens)
                                                 for i, c in enumerate(connections[name])))
                spent[name] += time.perf_counter() - t0
                tokens[name] += sum(streamed_tokens(body) for _, _, body in results)  # parsed after the clock
                if concurrency == 1:
                    ttft[name] += [first for _, first, _ in results]
            turn += 1
        for group in connections.values():
            for connection in group:
                connection.close()
        for name in servers:
            rates[f"{name}_c{concurrency}"].append(tokens[name] / spent[name])

    async def measure() -> None:
        for concurrency in concurrencies:  # warm up
            await paired_round(concurrency, 1.0)
        for value in (*rates.values(), *ttft.values()):
            value.clear()
        for _ in range(rounds):
            for concurrency in concurrencies:
                await paired_round(concurrency, seconds)

    try:
        run_client(measure())
    finally:
        for pids in trees.values():
            signal_all(pids, signal.SIGCONT)
    report: dict[str, object] = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    for name in servers:
        if name == baseline:
            continue
        prefix = "ratio" if len(servers) == 2 else f"ratio_{name}"
        for c in concurrencies:
            ratios = sorted(o / t for o, t in zip(rates[f"{name}_c{c}"], rates[f"{baseline}_c{c}"], strict=True))
            report[f"{prefix}_c{c}"] = round(statistics.median(ratios), 3)
            report[f"{prefix}_c{c}_quartiles"] = [round(q, 3) for q in statistics.quantiles(ratios, n=4)[::2]]
    for name in servers:
        report[f"ttft_{name}_ms"] = round(statistics.median(ttft[name]) * 1000, 2)
    return report
