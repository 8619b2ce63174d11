"""Bench: streamed tokens/s through the server against the same generation in-process.

    .venv/bin/python bench/llm_stream.py [--rounds 12] [--max-tokens 128] [--seconds 2.0] [--verbose]
                                         [--compare REV]

Builds the tiny Llama of the tests, then measures (rounds interleaved, same prompts and settings,
greedy, both with the transformers engine's streaming) tokens/s of streamed chat completions:
- in-process: the engine class driven directly in this process, concurrent requests from threads
  as the worker makes them (the baseline);
- server: POST /v1/chat/completions with stream=true through modelyard, read by a raw HTTP/1.1
  client over kept-alive connections (as the openai SDK's);
at concurrency 1, 4 and 8, with the time to first token of each. Torch uses one thread in both.
This machine's speed swings by up to 2x from one second to the next, so the setups take turns
request by request (by batches of N at concurrency N) within each round, and the ratios reported
are the medians of the rounds' ratios, with their quartiles. What batching is for is reported too:
the server's tokens/s at 8 over its tokens/s at 1 (the median of the rounds' ratios), and its
median first-token time at 4 over that at 1. The client reads each stream as it comes but parses it
only at the end, so on this small machine it takes little CPU from the server. Figures, never
pass/fail. With `--compare REV`, a server of git revision REV (its core, server and transformers
engine, checked out in a temporary worktree) takes its turns in the same rounds, and its ratio to
the same in-process baseline is reported next to this tree's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["MODELYARD_TORCH_THREADS"] = "1"

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "fixtures" / "llm"))

import httpx  # noqa: E402
import tiny_llama  # noqa: E402
from request_path import free_port, start, worktree  # noqa: E402

CONCURRENCIES = (1, 4, 8)
PROMPTS = [[{"role": "user", "content": f"Tell me a story about number {i}."}] for i in range(8)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(engine, messages, max_tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first, tokens = None, 0
    # the engine streams every answer (revisions before issue 13 streamed only when asked)
    for chunk in engine.chat([dict(m) for m in messages], {"stream": True, "max_tokens": max_tokens,
                                                           "temperature": 0}):
        if chunk.get("text") and first is None:
            first = time.perf_counter() - t0
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    return time.perf_counter() - t0, first, tokens


class Connection:
    """One kept-alive HTTP/1.1 connection to the server, as the openai SDK keeps them."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    def close(self) -> None:
        self.writer.close()


async def via_server(connection: Connection, messages, max_tokens: int) -> tuple[float, float, int]:
    body = json.dumps({"model": "tiny", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    t0 = time.perf_counter()
    connection.writer.write(head + body)
    first, tokens = None, 0
    buffer = b""
    while not buffer.endswith(b"\r\n0\r\n\r\n"):  # the last chunk of a chunked response
        data = await connection.reader.read(65536)
        if not data:
            raise ConnectionError("the server closed the connection mid-response")
        if first is None and b'"delta":{"content":' in data:  # the first token (not the role chunk)
            first = time.perf_counter() - t0
        buffer += data
    # parsed once at the end, so the client spends next to nothing per token
    for event in buffer.split(b"\n\n"):
        line = event[event.find(b"data: "):]
        if line.startswith(b"data: {") and b'"usage"' in line:
            tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    return time.perf_counter() - t0, first, tokens


def run_client(coroutine):
    """The load client's event loop: uvloop where it is installed, so the client costs little CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each round, per concurrency")
    parser.add_argument("--verbose", action="store_true", help="also report each round's c1 rates")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny Llama (tests use 64)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny Llama (tests use 2)")
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV's server, interleaved")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-llm-bench-"))
    model_dir = tiny_llama.build(str(work / "tiny"), hidden=args.hidden, layers=args.layers)

    import torch
    from modelyard_engine_transformers.llm import TransformersLLM

    from modelyard.types.llm import LLMRegistration

    torch.set_num_threads(1)
    registration = LLMRegistration.model_validate({
        "model_name": "tiny", "context_length": 512, "model_ability": ["chat", "generate"],
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 0, "quantization": "none",
                         "model_uri": model_dir}]})
    engine = TransformersLLM("tiny", registration, registration.model_specs[0], model_dir)
    engine.load()

    spec = {**registration.model_dump(mode="json"), "is_builtin": False}

    def serve(env: dict[str, str]) -> tuple[subprocess.Popen, int, int]:
        """A server with the tiny model launched: its process, port and worker pid."""
        port = free_port()
        proc, _ = start([sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"],
                        env, port)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}).raise_for_status()
        http.post("/v1/models", json={"model_name": "tiny", "model_type": "LLM",
                                      "model_engine": "transformers"}).raise_for_status()
        return proc, port, http.get("/v1/models/tiny").json()["pid"]

    server, port, worker_pid = serve({**os.environ, "MODELYARD_HOME": str(work / "home")})
    servers = {"server": port}
    procs = [server]
    tree = None
    try:
        if args.compare:
            tree = worktree(args.compare)
            paths = [str(tree / d) for d in ("core/src", "server/src", "plugins/engine-transformers/src")]
            rev, rev_port, _ = serve({**os.environ, "MODELYARD_HOME": str(work / "home-rev"),
                                      "PYTHONPATH": os.pathsep.join(paths)})
            procs.append(rev)
            servers[f"rev_{args.compare}"] = rev_port
        in_process(engine, PROMPTS[0], 16)  # warm up
        setups = ["in_process", *servers]
        rates: dict[str, list[float]] = {f"{s}_c{c}": [] for c in CONCURRENCIES for s in setups}
        ttft: dict[str, list[float]] = {f"{s}_c{c}": [] for c in CONCURRENCIES for s in setups}
        cpu = {"in_process": 0.0, "worker": 0.0, "server": 0.0}
        tokens_c1 = {"in_process": 0, "server": 0}

        async def in_process_turn(concurrency: int) -> tuple[int, list[float]]:
            # concurrent requests from threads, as the worker makes them: the engine batches them
            results = await asyncio.gather(*(asyncio.to_thread(in_process, engine, PROMPTS[i], args.max_tokens)
                                             for i in range(concurrency)))
            return sum(r[2] for r in results), [r[1] for r in results]

        async def server_turn(connections: list[Connection]) -> tuple[int, list[float]]:
            results = await asyncio.gather(*(via_server(connection, PROMPTS[i], args.max_tokens)
                                             for i, connection in enumerate(connections)))
            return sum(r[2] for r in results), [r[1] for r in results]

        async def paired_round(concurrency: int, seconds: float) -> None:
            """Both setups take turns request by request (by batches of `concurrency`) for `seconds`:
            a slow spell of the machine, which lasts longer than a request, then hits both alike."""
            connections = {name: [await Connection(p).open() for _ in range(concurrency)]
                           for name, p in servers.items()}
            spent = dict.fromkeys(setups, 0.0)
            tokens = dict.fromkeys(setups, 0)
            started = time.perf_counter()
            turn = 0
            while time.perf_counter() - started < seconds:
                turns = setups[turn % len(setups):] + setups[:turn % len(setups)]  # no setup always goes first
                turn += 1
                for setup in turns:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                    worker0, server0 = cpu_seconds(worker_pid), cpu_seconds(server.pid)
                    if setup == "in_process":
                        n, firsts = await in_process_turn(concurrency)
                    else:
                        n, firsts = await server_turn(connections[setup])
                    spent[setup] += time.perf_counter() - t0
                    tokens[setup] += n
                    ttft[f"{setup}_c{concurrency}"] += firsts
                    if concurrency == 1:
                        if setup == "in_process":
                            tokens_c1[setup] += n
                            cpu["in_process"] += time.process_time() - cpu0
                        elif setup == "server":
                            tokens_c1[setup] += n
                            cpu["worker"] += cpu_seconds(worker_pid) - worker0
                            cpu["server"] += cpu_seconds(server.pid) - server0
            for group in connections.values():
                for connection in group:
                    connection.close()
            for setup in spent:
                rates[f"{setup}_c{concurrency}"].append(tokens[setup] / spent[setup])

        async def measure() -> None:
            for _ in range(args.rounds):
                for concurrency in CONCURRENCIES:
                    await paired_round(concurrency, args.seconds)

        run_client(paired_round(1, 0.5))  # warm up the served path
        for value in rates.values():
            value.clear()
        for value in ttft.values():
            value.clear()
        cpu.update(in_process=0.0, worker=0.0, server=0.0)
        tokens_c1.update(in_process=0, server=0)
        run_client(measure())
        report = {k: round(statistics.median(v), 1) for k, v in rates.items()}
        for name in servers:
            prefix = "ratio" if name == "server" else f"ratio_{name}"
            for c in (f"c{c}" for c in CONCURRENCIES):
                ratios = sorted(s / i for s, i in zip(rates[f"{name}_{c}"], rates[f"in_process_{c}"], strict=True))
                report[f"{prefix}_{c}"] = round(statistics.median(ratios), 3)  # the median of the rounds' ratios
                report[f"{prefix}_{c}_quartiles"] = [round(q, 3) for q in statistics.quantiles(ratios, n=4)[::2]]
        if args.verbose:
            report["rounds_c1"] = [[round(i), round(s)] for i, s in zip(rates["in_process_c1"], rates["server_c1"],
                                                                       strict=True)]
        for name in setups:
            for c in CONCURRENCIES:
                report[f"ttft_{name}_c{c}_ms"] = round(statistics.median(ttft[f"{name}_c{c}"]) * 1000, 2)
        report["ttft_overhead_c1_ms"] = round(report["ttft_server_c1_ms"] - report["ttft_in_process_c1_ms"], 2)
        for name in servers:
            # what batching is for: a busy model's throughput, and a newcomer's first token
            c8_over_c1 = [c8 / c1 for c8, c1 in zip(rates[f"{name}_c8"], rates[f"{name}_c1"], strict=True)]
            report[f"{name}_tokens_per_s_c8_over_c1"] = round(statistics.median(c8_over_c1), 2)
            report[f"{name}_ttft_c4_over_c1"] = round(report[f"ttft_{name}_c4_ms"] / report[f"ttft_{name}_c1_ms"], 2)
        # CPU per token at concurrency 1: steadier than wall time on a shared machine
        report["cpu_ms_per_token_in_process_c1"] = round(cpu["in_process"] / tokens_c1["in_process"] * 1000, 3)
        report["cpu_ms_per_token_worker_c1"] = round(cpu["worker"] / tokens_c1["server"] * 1000, 3)
        report["cpu_ms_per_token_server_c1"] = round(cpu["server"] / tokens_c1["server"] * 1000, 3)
        report["max_tokens"] = args.max_tokens
        report["model"] = f"tiny Llama, hidden {args.hidden}, {args.layers} layers"
        print(json.dumps(report, indent=2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if tree is not None:
            subprocess.run(["git", "-C", str(BENCH.parent), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)


if __name__ == "__main__":
    main()
