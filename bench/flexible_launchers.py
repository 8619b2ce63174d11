"""Bench: flexible launchers' calls/s through the server, against the same calls in-process.

    .venv/bin/python bench/flexible_launchers.py [--rounds 5] [--seconds 3] [--only hf|yolo] [--imgsz 160]
                                                 [--hf-hidden N]

- `transformers` launcher: a tiny zero-shot classifier (tests/fixtures/embedding/tiny_st.py)
  registered with Xinference's documented JSON file; POST /v1/flexible/infers with one sentence and
  three candidate labels, next to the same `transformers.pipeline` call in this process.
- `yolo` launcher: a YOLO11n with random weights (tests/fixtures/flexible/tiny_yolo.py) registered
  with the documented JSON file, in its env with its own torch/torchvision pair (built once per
  machine, `modelyard.testing.server.shared_venv_dir`); POST /v1/flexible/infers with one base64
  JPEG (`conf=0.0, max_det=10`), next to the same predict on the same JPEG in a process of that env
  (bench/yolo_in_process.py: the bench's own environment has no ultralytics).

Served at concurrency 1 and 4 (bench/loadgen.py), one torch thread everywhere. The setups take
turns in each round in a rotating order; the ratios are the medians of the rounds' ratios. Both
launchers run one call at a time (neither library is thread-safe), so concurrency 4 measures
queueing overhead, not parallelism.

A served model waits between calls while each answer travels back and the next request arrives
(about 1.2 ms for a trivial model: bench/request_path.py), and on this kind of machine a call that
follows a pause runs slower than one in a tight loop. `in_process_paced` makes the same in-process
calls with a pause of `--pause-ms` between them, so the ratio against it separates the server's own
cost from that effect. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["MODELYARD_TORCH_THREADS"] = "1"

BENCH = Path(__file__).resolve().parent
FIXTURES = BENCH.parent / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES / "embedding"))

import tiny_st  # noqa: E402
from rounds import calls_per_second, interleaved, modelyard_server, ratio, served_rps  # noqa: E402

SENTENCE = "one day I will see the world"
LABELS = ["travel", "cooking", "dancing"]


def hf_zero_shot(work: Path, port: int, http, args) -> dict:
    import torch
    from transformers import pipeline

    torch.set_num_threads(1)
    # --hf-hidden: the same random classifier at a size whose call costs what a real model's does
    size = {}
    if args.hf_hidden is not None:
        heads = args.hf_hidden // 64 if args.hf_hidden % 64 == 0 else 1
        size = {"hidden_size": args.hf_hidden, "intermediate_size": 4 * args.hf_hidden, "num_attention_heads": heads}
    model_dir = tiny_st.build_sequence_classifier(str(work / "zs"), ["contradiction", "neutral", "entailment"], **size)
    classify = pipeline("zero-shot-classification", model=model_dir, device="cpu")
    spec = {"model_name": "zero-shot", "model_uri": model_dir, "launcher_args": json.dumps(
        {"task": "zero-shot-classification"}), "launcher": "xinference.model.flexible.launchers.transformers"}
    http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()
    http.post("/v1/models", json={"model_name": "zero-shot", "model_type": "flexible"}).raise_for_status()
    body = {"model": "zero-shot", "args": [SENTENCE], "candidate_labels": LABELS}
    def in_process(pause: float) -> float:
        return calls_per_second(lambda: classify(SENTENCE, candidate_labels=LABELS), args.seconds, pause)

    return compare("hf_zero_shot", in_process, port, body, args)


def yolo_detections(work: Path, port: int, http, args) -> dict:
    from PIL import Image

    from modelyard.testing.server import planned_env_python

    pair = ["torch==2.14.1", "torchvision==0.29.1"]  # this machine's pair (see the yolo plugin's README)
    weights = work / "yolo11n.pt"
    virtualenv = {"packages": ["ultralytics", "#system_numpy#"], "inherit_pip_config": True}
    spec = {"model_name": "yolo", "model_uri": str(weights), "launcher_args": json.dumps({"imgsz": args.imgsz}),
            "launcher": "xinference.model.flexible.launchers.yolo", "virtualenv": virtualenv}
    http.post("/v1/model_registrations/flexible", json={"model": json.dumps(spec)}).raise_for_status()
    launch = {"model_name": "yolo", "model_type": "flexible", "virtual_env_packages": pair}
    python = planned_env_python(virtualenv, "yolo", tuple(pair))
    if not python.exists():  # the first launch builds the env, then fails for want of the weights
        http.post("/v1/models", json=launch, timeout=900)
    subprocess.run([str(python), str(FIXTURES / "flexible" / "tiny_yolo.py"), str(weights)], check=True,
                   capture_output=True)
    http.post("/v1/models", json=launch, timeout=900).raise_for_status()
    buffer = io.BytesIO()
    Image.effect_noise((args.imgsz, args.imgsz * 3 // 4), 60).convert("RGB").save(buffer, format="JPEG")
    (work / "image.jpg").write_bytes(buffer.getvalue())
    baseline = subprocess.Popen([str(python), str(BENCH / "yolo_in_process.py"), str(weights),
                                 str(work / "image.jpg"), str(args.imgsz)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert baseline.stdout.readline().strip() == "ready"

    def in_process(pause: float) -> float:
        baseline.stdin.write(f"{args.seconds} {pause}\n")
        baseline.stdin.flush()
        return float(baseline.stdout.readline())

    body = {"model": "yolo", "source": base64.b64encode(buffer.getvalue()).decode(), "conf": 0.0, "max_det": 10}
    try:
        return compare("yolo", in_process, port, body, args)
    finally:
        baseline.stdin.close()
        baseline.wait(30)


def compare(name: str, in_process, port: int, body: dict, args) -> dict:
    setups = {
        "in_process": lambda: in_process(0.0),
        "in_process_paced": lambda: in_process(args.pause_ms / 1000),
        "server_c1": lambda: served_rps(port, "/v1/flexible/infers", body, 1, args.seconds),
        "server_c4": lambda: served_rps(port, "/v1/flexible/infers", body, 4, args.seconds),
    }
    rates = interleaved(setups, args.rounds)
    report: dict = {f"{name}_{setup}": round(statistics.median(v), 1) for setup, v in rates.items()}
    for served in ("server_c1", "server_c4"):
        report.update({f"{name}_{k}": v for k, v in ratio(rates, served, "in_process").items()})
    report.update({f"{name}_{k}_vs_paced": v for k, v in ratio(rates, "server_c1", "in_process_paced").items()})
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", choices=("hf", "yolo"), default=None)
    parser.add_argument("--imgsz", type=int, default=160, help="YOLO's input size, and the JPEG's width")
    parser.add_argument("--hf-hidden", type=int, default=None,
                        help="the zero-shot classifier's hidden size (default: the tests' tiny model, 32)")
    parser.add_argument("--pause-ms", type=float, default=1.2, help="the paced in-process baseline's pause")
    args = parser.parse_args()

    from modelyard.testing.server import shared_venv_dir

    os.environ["MODELYARD_VENV_DIR"] = shared_venv_dir()  # the YOLO env is built once per machine
    work = Path(tempfile.mkdtemp(prefix="modelyard-flexible-bench-"))
    report: dict = {}
    with modelyard_server(work / "home") as (port, http):
        if args.only in (None, "hf"):
            report.update(hf_zero_shot(work, port, http, args))
        if args.only in (None, "yolo"):
            report.update(yolo_detections(work, port, http, args))
    report.update(rounds=args.rounds, seconds=args.seconds, imgsz=args.imgsz, pause_ms=args.pause_ms,
                  hf_hidden=args.hf_hidden or 32)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
