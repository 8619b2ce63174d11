"""The `transformers` flexible launcher: any `transformers.pipeline` task behind `infer`.
Imported only inside the worker.

`launcher_args` and launch options (`task`, `device`, and any other `transformers.pipeline`
keyword) build the pipeline over `model_uri`; `infer(*args, **kwargs)` calls it. For a task that
takes images, a base64 string or data URL in the arguments is decoded to an image first (a local
path only under `MODELYARD_INPUT_DIRS`); audio is handed over as its bytes. The worker answers in
JSON: arrays and tensors as lists, numbers as numbers, images as base64 PNG (`modelyard.jsonable`).
"""

from __future__ import annotations

from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.flexible import FlexibleModel
from modelyard.media import read_bytes, read_image

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


class PipelineModel(FlexibleModel):
    concurrency = 1  # a pipeline is not safe to call from two threads at once

    def load(self) -> None:
        options = dict(self.config)
        task = options.pop("task", None)
        if task is not None and not isinstance(task, str):
            raise InvalidRequest(f"task must be a pipeline task name, got {task!r}.")
        device = options.pop("device", None) or self.device
        path = self.local_model_path()
        import torch
        from transformers import pipeline

        threads = config.torch_threads(options.pop("torch_threads", None))
        if threads:
            torch.set_num_threads(threads)
        try:
            self.pipeline = pipeline(task=task, model=path, device=device, **options)
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
        return result  # the worker turns arrays, tensors and PIL images into JSON (modelyard.jsonable)


def launcher(model_uid: str, model_spec: Any, **kwargs: Any) -> PipelineModel:
    return PipelineModel(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)
