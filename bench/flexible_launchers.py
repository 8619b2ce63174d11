"""Bench: flexible launchers' calls/s through the server, against the same calls in-process.

    .venv/bin/python bench/flexible_launchers.py [--rounds 5] [--seconds 3]

The `transformers` launcher serves a tiny zero-shot classifier (tests/fixtures/embedding/tiny_st.py)
registered with Xinference's documented JSON file: POST /v1/flexible/infers with one sentence and
three candidate labels, at concurrency 1 and 4 (bench/loadgen.py), next to the same
`transformers.pipeline` call in this process, one torch thread in both. The setups take turns in
each round in a rotating order; the ratios are the medians of the rounds' ratios. The launcher runs
one call at a time (a pipeline is not thread-safe), so concurrency 4 measures queueing overhead,
not parallelism. (YOLO joins when its launcher does.) Figures, never pass/fail.
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
os.environ["MODELYARD_TORCH_THREADS"] = "1"

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "fixtures" / "embedding"))

import tiny_st  # noqa: E402
from rounds import calls_per_second, interleaved, modelyard_server, ratio, served_rps  # noqa: E402

SENTENCE = "one day I will see the world"
LABELS = ["travel", "cooking", "dancing"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    import torch
    from transformers import pipeline

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="modelyard-flexible-bench-"))
    model_dir = tiny_st.build_sequence_classifier(str(work / "zs"), ["contradiction", "neutral", "entailment"])
    classify = pipeline("zero-shot-classification", model=model_dir, device="cpu")

    def in_process() -> float:
        return calls_per_second(lambda: classify(SENTENCE, candidate_labels=LABELS), args.seconds)

    with modelyard_server(work / "home") as (port, http):
        spec = {"model_name": "zero-shot", "model_uri": model_dir, "launcher_args": json.dumps(
            {"task": "zero-shot-classification"}), "launcher": "xinference.model.flexible.launchers.transformers"}
        http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()
        http.post("/v1/models", json={"model_name": "zero-shot", "model_type": "flexible"}).raise_for_status()
        body = {"model": "zero-shot", "args": [SENTENCE], "candidate_labels": LABELS}
        setups = {
            "in_process": in_process,
            "server_c1": lambda: served_rps(port, "/v1/flexible/infers", body, 1, args.seconds),
            "server_c4": lambda: served_rps(port, "/v1/flexible/infers", body, 4, args.seconds),
        }
        rates = interleaved(setups, args.rounds)
        report: dict = {f"hf_zero_shot_{name}": round(statistics.median(v), 1) for name, v in rates.items()}
        for served in ("server_c1", "server_c4"):
            report.update({f"hf_zero_shot_{k}": v for k, v in ratio(rates, served, "in_process").items()})
        report.update(rounds=args.rounds, seconds=args.seconds)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
