"""The `transformers` flexible launcher: any `transformers.pipeline` task behind `infer`.
Imported only inside the worker.

`launcher_args` and launch options (`task`, `device`, and any other `transformers.pipeline`
keyword) build the pipeline over `model_uri`; `infer(*args, **kwargs)` calls it. For a task that
takes images, a base64 string or data URL in the arguments is decoded to an image first (a local
path only under `MODELYARD_INPUT_DIRS`); audio is handed over as its bytes. The answer is plain
JSON: arrays and tensors as lists, numbers as numbers, images as base64 PNG.
"""

from __future__ import annotations

import os
from typing import Any

from modelyard import config
from modelyard.arrays import as_array
from modelyard.errors import InvalidRequest
from modelyard.flexible import FlexibleModel
from modelyard.media import png_base64, read_bytes, read_image

# the calls run on the worker's pool threads: the environment is the one setting all of them see
config.omp_threads_from_env()

IMAGE_TASKS = frozenset({
    "image-classification", "zero-shot-image-classification", "object-detection", "zero-shot-object-detection",
    "image-segmentation", "image-to-text", "image-text-to-text", "depth-estimation", "image-feature-extraction",
    "image-to-image", "mask-generation", "visual-question-answering", "document-question-answering",
})
AUDIO_TASKS = frozenset({"automatic-speech-recognition", "audio-classification", "zero-shot-audio-classification"})
# the keyword names pipelines take their main input by, besides the first positional argument
INPUT_KEYWORDS = ("inputs", "images", "image", "audio")


def plain(value: Any) -> Any:
    """A pipeline's answer as JSON values."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__.startswith("PIL.") and hasattr(value, "save"):
        return png_base64(value)
    found = as_array(value)
    if found is not None:
        return found.tolist()
    if hasattr(value, "item"):  # a numpy or torch scalar
        return value.item()
    return str(value)


class PipelineModel(FlexibleModel):
    concurrency = 1  # a pipeline is not safe to call from two threads at once

    def load(self) -> None:
        options = dict(self.config)
        task = options.pop("task", None)
        if task is not None and not isinstance(task, str):
            raise InvalidRequest(f"task must be a pipeline task name, got {task!r}.")
        path = (self.model_path or "").removeprefix("file://")
        if not path:
            raise InvalidRequest("This flexible model has no model_uri: give the folder of the model's files.")
        if path.startswith(("/", "~", ".")) and not os.path.exists(os.path.expanduser(path)):
            raise InvalidRequest(f"model_uri {path!r} does not exist on this machine.")
        import torch
        from transformers import pipeline

        threads = config.torch_threads(options.pop("torch_threads", None))
        if threads:
            torch.set_num_threads(threads)
        try:
            self.pipeline = pipeline(task=task, model=os.path.expanduser(path), device=self.device, **options)
        except KeyError as exc:  # an unknown task: transformers lists the known ones
            raise InvalidRequest(f"transformers.pipeline: {exc.args[0] if exc.args else exc}") from None
        except (ValueError, OSError, TypeError, RuntimeError) as exc:
            raise InvalidRequest(f"transformers.pipeline(task={task!r}) could not load {path}: {exc}") from None
        self.task = self.pipeline.task

    def _decoded(self, value: Any, what: str) -> Any:
        if isinstance(value, list):
            return [self._decoded(v, f"{what}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        if self.task in IMAGE_TASKS:
            return read_image(value, what)
        if self.task in AUDIO_TASKS:
            return read_bytes(value, what)
        return value

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        if args:
            args = (self._decoded(args[0], "the first argument"), *args[1:])
        for name in INPUT_KEYWORDS:
            if name in kwargs:
                kwargs[name] = self._decoded(kwargs[name], name)
        try:
            result = self.pipeline(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:  # arguments this task does not take
            raise InvalidRequest(f"The {self.task} pipeline refused these arguments: {type(exc).__name__}: "
                                 f"{exc}") from None
        return plain(result)


def launcher(model_uid: str, model_spec: Any, **kwargs: Any) -> PipelineModel:
    return PipelineModel(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)
