"""The `yolo` flexible launcher: an ultralytics YOLO model behind `infer`. Imported only inside the
worker.

`infer(source=..., **predict_keywords)`: `source` is a base64 image or a data URL, or a list of them
(a local path only under `MODELYARD_INPUT_DIRS`); URLs, globs, video streams, webcams and `screen`
are refused, since each makes the server read or fetch something for its caller. Predict keywords
come from an allow-list; those that write files or open windows on the server are refused by name.
The answer has one entry per image: its detections as ultralytics' `summary()` gives them
(`{"name", "class", "confidence", "box": {"x1", "y1", "x2", "y2"}}`, plus masks or keypoints
for segmentation and pose models).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.flexible import FlexibleModel
from modelyard.media import read_image

config.omp_threads_from_env()
# ultralytics reads these when it is imported. A server never lets a model phone home, and never
# lets it pip-install what it misses at run time (that would bypass the env gates), so the second
# is not the user's to change; its settings file goes to a folder of its own, not ~/.config.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ["YOLO_AUTOINSTALL"] = "0"
os.environ.setdefault("YOLO_CONFIG_DIR", os.path.join(tempfile.gettempdir(), "modelyard-yolo-config"))
os.environ.setdefault("YOLO_VERBOSE", "0")

PREDICT_KEYWORDS = ("conf", "iou", "imgsz", "max_det", "classes", "augment", "agnostic_nms", "half")
# what would write files on the server, or open a window on it
WRITES_OR_SHOWS = frozenset({"save", "save_txt", "save_conf", "save_crop", "save_frames", "project", "name",
                             "exist_ok", "show", "show_labels", "show_conf", "show_boxes", "visualize"})
LOAD_KEYWORDS = ("task",)  # what YOLO(...) itself takes from launcher_args
GLOB_CHARACTERS = frozenset("*?[")


def checked_predict_keywords(given: dict[str, Any], where: str) -> dict[str, Any]:
    allowed = ", ".join(PREDICT_KEYWORDS)
    for name in given:
        if name in WRITES_OR_SHOWS:
            raise InvalidRequest(f"The predict keyword {name!r} ({where}) writes files or opens windows on the "
                                 f"server, which this launcher does not do; the answer comes back as JSON. "
                                 f"Allowed: {allowed}.")
        if name not in PREDICT_KEYWORDS:
            raise InvalidRequest(f"Unknown predict keyword {name!r} ({where}); allowed: {allowed}.")
    return given


def image_of(value: Any, what: str) -> Any:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a base64 image or a data URL, not {type(value).__name__}: webcams "
                             "and streams are not served.")
    if value.strip().lower().startswith("screen"):
        raise InvalidRequest(f"{what} asks for a screenshot of the server, which is not served; send an image.")
    if not value.startswith("data:") and GLOB_CHARACTERS & set(value):
        raise InvalidRequest(f"{what} is a file pattern; globs are not served: send each image as base64.")
    return read_image(value, what)


class YOLOModel(FlexibleModel):
    concurrency = 1  # a YOLO model keeps its predictor's state on itself

    def load(self) -> None:
        options = dict(self.config)
        device = options.pop("device", None) or self.device or "cpu"
        threads = config.torch_threads(options.pop("torch_threads", None))
        load_options = {k: options.pop(k) for k in LOAD_KEYWORDS if k in options}
        # what is left are defaults for every call, from launcher_args or the launch
        self.defaults = checked_predict_keywords(options, "in launcher_args or the launch options")
        path = self.local_model_path(hub_ids=False)  # a bare weights name would be downloaded
        import torch
        from ultralytics import YOLO

        if threads:
            torch.set_num_threads(threads)
        from ultralytics.cfg import DEFAULT_CFG_DICT

        try:
            self.model = YOLO(path, **load_options)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError, ModuleNotFoundError,
                pickle.UnpicklingError) as exc:
            raise InvalidRequest(f"ultralytics.YOLO could not load {path}: {type(exc).__name__}: {exc}") from None
        self.device = device
        # A predictor keeps the keywords of its last call: every call names them all, so one caller's
        # max_det never becomes the next one's (conf: the 0.25 YOLO.predict itself defaults to)
        self.baseline = {**{k: DEFAULT_CFG_DICT.get(k) for k in PREDICT_KEYWORDS}, "conf": 0.25, **self.defaults}
        # the first predict imports and sets up the rest of ultralytics (seconds): at launch, not on a request
        from PIL import Image

        self._predict([Image.new("RGB", (32, 32))], {**self.baseline, "imgsz": 32})

    def _predict(self, images: list[Any], options: dict[str, Any]) -> list[Any]:
        return self.model.predict(images, device=self.device, verbose=False, stream=False, save=False, **options)

    def infer(self, *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        if "source" in kwargs and args:
            raise InvalidRequest("Give source once: as the first argument or as source=..., not both.")
        if len(args) > 1:
            raise InvalidRequest("infer takes one positional argument, the source; give predict keywords by name.")
        source = kwargs.pop("source") if "source" in kwargs else (args[0] if args else None)
        if source is None:
            raise InvalidRequest("infer needs source=: a base64 image or a data URL, or a list of them.")
        options = {**self.baseline, **checked_predict_keywords(kwargs, "in this call")}
        if isinstance(source, list):
            if not source:
                raise InvalidRequest("source is an empty list; give at least one image.")
            images = [image_of(value, f"source[{i}]") for i, value in enumerate(source)]
        else:
            images = [image_of(source, "source")]
        try:
            results = self._predict(images, options)
        except (TypeError, ValueError, SyntaxError, KeyError) as exc:  # ultralytics checks its keywords' values
            raise InvalidRequest(f"YOLO predict refused these keywords: {type(exc).__name__}: {exc}") from None
        return [result.summary() for result in results]


def launcher(model_uid: str, model_spec: Any, **kwargs: Any) -> YOLOModel:
    return YOLOModel(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)
