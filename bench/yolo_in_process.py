"""The in-process side of bench/flexible_launchers.py's YOLO half, run by the YOLO model's env python
(the bench's own environment has no ultralytics, by design): loads the weights once, then for each
line read ("SECONDS PAUSE") prints how many calls per second it made in that time, sleeping PAUSE
seconds after each call (not counted). A call is what a user would do in-process with the same
JPEG: decode it, predict, take each result's summary().

    <env>/bin/python bench/yolo_in_process.py WEIGHTS JPEG IMGSZ
"""

import io
import os
import sys
import tempfile
from pathlib import Path

os.environ["YOLO_OFFLINE"] = "1"
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "modelyard-yolo-config"))
os.environ.setdefault("YOLO_VERBOSE", "0")


sys.path.insert(0, str(Path(__file__).resolve().parent))
from rounds import calls_per_second  # noqa: E402


def main() -> None:
    weights, jpeg, imgsz = sys.argv[1], open(sys.argv[2], "rb").read(), int(sys.argv[3])
    import torch
    from PIL import Image
    from ultralytics import YOLO

    torch.set_num_threads(int(os.environ.get("MODELYARD_TORCH_THREADS", "1")))
    model = YOLO(weights)

    def call() -> object:
        image = Image.open(io.BytesIO(jpeg))
        results = model.predict([image], imgsz=imgsz, conf=0.0, max_det=10, device="cpu", verbose=False)
        return [r.summary() for r in results]

    call()  # ultralytics sets itself up on the first predict
    print("ready", flush=True)
    for line in sys.stdin:
        seconds, pause = map(float, line.split())
        print(calls_per_second(call, seconds, pause), flush=True)


if __name__ == "__main__":
    main()
