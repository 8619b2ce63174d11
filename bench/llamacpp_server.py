"""Bench: streamed tokens/s and time to first token of a GGUF through modelyard's llama.cpp engine,
against llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`) on the same file.

    .venv/bin/python bench/llamacpp_server.py [--rounds 10] [--max-tokens 128] [--seconds 3]
                                              [--hidden 64] [--layers 2]

Writes the tests' tiny Llama as a GGUF (tests/fixtures/llm/tiny_gguf.py; `--hidden`/`--layers`
make it bigger), then serves it twice with the same settings: n_ctx 512, one thread for generation
and for the prompt, greedy, no repeat penalty, the GGUF's chat template. llama_cpp.server needs its
`[server]` extras; the bench installs the ones this environment lacks into `.bench/llama-cpp-server`
(with `--no-deps`, so nothing of the server's environment changes) and puts them on that process's
path only. Both servers are read by the same raw HTTP/1.1 client over kept-alive connections, at
concurrency 1 and 8; the two take turns request by request (by batches of eight at concurrency 8)
within each round, and the ratios are the medians of the rounds' own ratios, with their quartiles.
llama_cpp.server runs with `--interrupt_requests false`, so a request does not cut the one before
it short. Tokens are counted from each stream after its clock stops: modelyard's usage, and
llama_cpp.server's chunks with text (one per token; its streams carry no usage). Figures, never
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "llm"))

import httpx  # noqa: E402
import tiny_gguf  # noqa: E402
import tiny_llama  # noqa: E402
from openai_servers import compare, wait_for  # noqa: E402
from request_path import free_port  # noqa: E402

EXTRAS = ROOT / ".bench" / "llama-cpp-server"
EXTRA_PACKAGES = ["pydantic-settings>=2.0.1", "sse-starlette>=1.6.1", "starlette-context>=0.3.6,<0.4", "python-dotenv"]
PROMPTS = [[{"role": "user", "content": f"Tell me a story about number {i}."}] for i in range(8)]
# the same sampling on both: greedy, and none of llama_cpp.server's defaults that differ from modelyard's
SAMPLING = {"modelyard": {"temperature": 0, "top_p": 1.0, "repetition_penalty": 1.0,
                          "stream_options": {"include_usage": True}},
            "llama_cpp_server": {"temperature": 0, "top_p": 1.0, "repeat_penalty": 1.0}}


def llama_cpp_server_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(EXTRAS)}
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp.server.app"], env=env, capture_output=True)
    if probe.returncode != 0:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(EXTRAS),
                        *EXTRA_PACKAGES], check=True)
    return env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each round, per concurrency")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny Llama (tests use 64)")
    parser.add_argument("--layers", type=int, default=2, help="layers of the tiny Llama (tests use 2)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelyard-llamacpp-bench-"))
    hf = tiny_llama.build(str(work / "hf"), hidden=args.hidden, layers=args.layers)
    gguf = tiny_gguf.build(hf, str(work / "tiny.gguf"))
    procs: list[subprocess.Popen] = []
    try:
        ours_port, theirs_port = free_port(), free_port()
        env = {**os.environ, "MODELYARD_HOME": str(work / "home"), "MODELYARD_TORCH_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "modelyard", "serve", "--port", str(ours_port),
                                       "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host",
                                       "127.0.0.1", "--port", str(theirs_port), "--n_ctx", "512", "--n_threads", "1",
                                       "--n_threads_batch", "1", "--verbose", "false",
                                       "--interrupt_requests", "false"], env=llama_cpp_server_env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ours_url, theirs_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}"
        wait_for(ours_url, procs[0])
        wait_for(theirs_url, procs[1])
        http = httpx.Client(base_url=ours_url, timeout=300)
        registration = {"model_name": "tiny-gguf", "context_length": 512, "model_ability": ["generate", "chat"],
                        "model_specs": [{"model_format": "ggufv2", "quantization": "f32", "model_uri": gguf}]}
        http.post("/v1/model_registrations/LLM", json={"model": json.dumps(registration)}).raise_for_status()
        http.post("/v1/models", json={"model_name": "tiny-gguf", "model_type": "LLM", "model_engine": "llama.cpp",
                                      "n_threads": 1, "n_ctx": 512}).raise_for_status()
        servers = {"modelyard": ours_port, "llama_cpp_server": theirs_port}

        answers = {}
        for name, url in (("modelyard", ours_url), ("llama_cpp_server", theirs_url)):
            reply = httpx.post(url + "/v1/chat/completions", timeout=300, json={
                "model": "tiny-gguf", "messages": PROMPTS[0], "max_tokens": args.max_tokens, **SAMPLING[name]}).json()
            assert "usage" in reply, (name, reply)
            assert reply["usage"]["completion_tokens"] == args.max_tokens, (name, reply["usage"])
            answers[name] = reply["choices"][0]["message"]["content"]

        report = compare({name: (port, SAMPLING[name]) for name, port in servers.items()}, "tiny-gguf", PROMPTS,
                         args.max_tokens, args.rounds, args.seconds, (1, 8), baseline="llama_cpp_server")
        report["same_text"] = answers["modelyard"] == answers["llama_cpp_server"]
        report["max_tokens"] = args.max_tokens
        report["model"] = f"tiny Llama GGUF f32, hidden {args.hidden}, {args.layers} layers, one thread"
        print(json.dumps(report, indent=2))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
