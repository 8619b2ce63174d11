"""Bench: streamed tokens/s through the server against the same generation in-process.

    .venv/bin/python bench/llm_stream.py [--rounds 16] [--max-tokens 128] [--seconds 1.0]

Builds the tiny Llama of the tests, then measures (rounds interleaved, same prompts and settings,
greedy, both with the transformers engine's streaming) tokens/s of streamed chat completions:
- in-process: the engine class driven directly in this process (the baseline);
- server: POST /v1/chat/completions with stream=true through modelyard, read by a raw HTTP/1.1
  client over kept-alive connections (as the openai SDK's), at concurrency 1 and 8;
plus the time to first token in both. Torch uses one thread in both. The machine's own speed drifts
by up to 20% from one minute to the next, so each round measures both setups back to back (taking
turns at going first) and the ratios reported are the medians of the rounds' ratios, with their
quartiles. With --pin, the model's threads get one core of their own in both setups and the server
and client share the rest. The client reads each stream as it comes but parses it only at the end,
so on this small machine it takes little CPU from the server. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
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
from request_path import free_port, start  # noqa: E402

PROMPTS = [[{"role": "user", "content": f"Tell me a story about number {i}."}] for i in range(8)]


def pin(pid: int, cores: set[int]) -> None:
    """Set the CPU affinity of every thread of a process."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cores)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(engine, messages, max_tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first, tokens = None, 0
    for chunk in engine.chat([dict(m) for m in messages], {"stream": True, "max_tokens": max_tokens,
                                                           "temperature": 0}):
        if chunk["text"] and first is None:
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
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
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
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each measurement")
    parser.add_argument("--pin", action="store_true",
                        help="give the model's threads one core in both setups (the worker's threads and the "
                             "in-process engine on the last core; the server and this client on the others)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny Llama (tests use 64)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny Llama (tests use 2)")
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

    env = {**os.environ, "MODELYARD_HOME": str(work / "home")}
    port = free_port()
    server, _ = start([sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"],
                      env, port)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
        spec = {**registration.model_dump(mode="json"), "is_builtin": False}
        http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}).raise_for_status()
        http.post("/v1/models", json={"model_name": "tiny", "model_type": "LLM",
                                      "model_engine": "transformers"}).raise_for_status()
        in_process(engine, PROMPTS[0], 16)
        rates: dict[str, list[float]] = {"in_process_c1": [], "server_c1": [], "in_process_c8": [], "server_c8": []}
        ttft: dict[str, list[float]] = {"in_process": [], "server": []}
        def repeat(measure, seconds: float) -> tuple[float, list[float]]:
            """Run `measure` (-> tokens, first-token times) until `seconds` pass: tokens/s and TTFTs."""
            t0, tokens, firsts = time.perf_counter(), 0, []
            while time.perf_counter() - t0 < seconds:
                n, f = measure()
                tokens, firsts = tokens + n, firsts + f
            return tokens / (time.perf_counter() - t0), firsts

        def on_model_core(measure):
            def pinned():
                if not args.pin:
                    return measure()
                os.sched_setaffinity(0, model_core)  # the engine's threads start from here: they inherit it
                try:
                    return measure()
                finally:
                    os.sched_setaffinity(0, other_cores)
            return pinned

        @on_model_core
        def in_c1():
            _, first, tokens = in_process(engine, PROMPTS[0], args.max_tokens)
            return tokens, [first]

        @on_model_core
        def in_c8():  # the engine queues concurrent requests, so eight in turn is its best
            return sum(in_process(engine, PROMPTS[i], args.max_tokens)[2] for i in range(8)), []

        def through_server(concurrency: int, seconds: float) -> tuple[float, list[float]]:
            """Like repeat(), with the whole measurement inside one client event loop."""
            async def measure() -> tuple[float, list[float]]:
                connections = [await Connection(port).open() for _ in range(concurrency)]
                t0, tokens, firsts = time.perf_counter(), 0, []
                while time.perf_counter() - t0 < seconds:
                    results = await asyncio.gather(*(via_server(connections[i], PROMPTS[i], args.max_tokens)
                                                     for i in range(concurrency)))
                    tokens += sum(r[2] for r in results)
                    firsts += [r[1] for r in results]
                rate = tokens / (time.perf_counter() - t0)
                for connection in connections:
                    connection.close()
                return rate, firsts
            return run_client(measure())

        worker_pid = http.get("/v1/models/tiny").json()["pid"]
        model_core = {max(os.sched_getaffinity(0))}
        other_cores = os.sched_getaffinity(0) - model_core or model_core
        if args.pin:
            pin(worker_pid, model_core)  # threads the worker starts later inherit it
            pin(server.pid, other_cores)
            os.sched_setaffinity(0, other_cores)
        through_server(1, 0.5)  # warm up
        cpu = {"in_process": 0.0, "worker": 0.0, "server": 0.0}
        def in_c1_measured() -> None:
            before = time.process_time()
            rate, firsts = repeat(in_c1, args.seconds)
            cpu["in_process"] += time.process_time() - before
            rates["in_process_c1"].append(rate)
            ttft["in_process"] += firsts

        def server_c1_measured() -> None:
            before_worker, before_server = cpu_seconds(worker_pid), cpu_seconds(server.pid)
            rate, firsts = through_server(1, args.seconds)
            cpu["worker"] += cpu_seconds(worker_pid) - before_worker
            cpu["server"] += cpu_seconds(server.pid) - before_server
            rates["server_c1"].append(rate)
            ttft["server"] += firsts

        def in_c8_measured() -> None:
            rates["in_process_c8"].append(repeat(in_c8, args.seconds)[0])

        def server_c8_measured() -> None:
            rates["server_c8"].append(through_server(8, args.seconds)[0])

        for round_ in range(args.rounds):
            # the two setups take turns going first, so a drift of the machine's speed within a round
            # favours neither; each round's ratio compares measurements made seconds apart
            pairs = [(in_c1_measured, server_c1_measured), (in_c8_measured, server_c8_measured)]
            for first, second in pairs:
                first, second = (first, second) if round_ % 2 == 0 else (second, first)
                first()
                second()
        report = {k: round(statistics.median(v), 1) for k, v in rates.items()}
        for c in ("c1", "c8"):
            ratios = sorted(s / i for s, i in zip(rates[f"server_{c}"], rates[f"in_process_{c}"], strict=True))
            report[f"ratio_{c}"] = round(statistics.median(ratios), 3)  # the median of the rounds' ratios
            report[f"ratio_{c}_quartiles"] = [round(q, 3) for q in statistics.quantiles(ratios, n=4)[::2]]
        report["ttft_in_process_ms"] = round(statistics.median(ttft["in_process"]) * 1000, 2)
        report["ttft_server_ms"] = round(statistics.median(ttft["server"]) * 1000, 2)
        report["ttft_overhead_ms"] = round(report["ttft_server_ms"] - report["ttft_in_process_ms"], 2)
        # CPU per token at concurrency 1: steadier than wall time on a shared machine
        in_tokens = sum(rates["in_process_c1"]) * args.seconds
        server_tokens = sum(rates["server_c1"]) * args.seconds
        report["cpu_ms_per_token_in_process_c1"] = round(cpu["in_process"] / in_tokens * 1000, 3)
        report["cpu_ms_per_token_worker_c1"] = round(cpu["worker"] / server_tokens * 1000, 3)
        report["cpu_ms_per_token_server_c1"] = round(cpu["server"] / server_tokens * 1000, 3)
        report["max_tokens"] = args.max_tokens
        report["model"] = f"tiny Llama, hidden {args.hidden}, {args.layers} layers"
        report["pinned"] = args.pin
        print(json.dumps(report, indent=2))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
