"""The `modelscope` flexible launcher: any `modelscope.pipelines.pipeline` task behind `infer`.
Imported only inside the worker.

`launcher_args` and launch options (`task`, required, `device`, and any other keyword ModelScope's
`pipeline` takes) build the pipeline over `model_uri`; `infer(*args, **kwargs)` calls it. Images
for vision tasks come as base64 or data URLs (a local path only under `MODELYARD_INPUT_DIRS`).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.flexible import FlexibleModel
from modelyard.media import read_image

config.omp_threads_from_env()
# ModelScope caches what it resolves under ~/.cache/modelscope unless told otherwise; a local model
# needs no hub, and the worker must not write into the user's home behind the server's back
os.environ.setdefault("MODELSCOPE_CACHE", os.path.join(tempfile.gettempdir(), "modelyard-modelscope-cache"))

# ModelScope's task names for pipelines that take an image as their input
IMAGE_TASKS = frozenset({
    "image-classification", "image-object-detection", "domain-specific-object-detection", "image-segmentation",
    "image-captioning", "ocr-recognition", "ocr-detection", "face-detection", "image-portrait-stylization",
    "image-color-enhancement", "image-denoising", "image-super-resolution", "visual-question-answering",
})


class ModelScopePipelineModel(FlexibleModel):
    concurrency = 1  # ModelScope pipelines keep per-call state on the pipeline object

    def load(self) -> None:
        options = dict(self.config)
        task = options.pop("task", None)
        if not task or not isinstance(task, str):
            raise InvalidRequest("The modelscope launcher needs a task: put it in launcher_args, for example "
                                 '{"task": "zero-shot-classification"}, or pass task=... when launching.')
        device = options.pop("device", None) or self.device or "cpu"
        path = self.local_model_path()
        import torch
        from modelscope.pipelines import pipeline

        threads = config.torch_threads(options.pop("torch_threads", None))
        if threads:
            torch.set_num_threads(threads)
        try:
            self.pipeline = pipeline(task=task, model=path, device=device, **options)
        except KeyError as exc:  # ModelScope's registry has no pipeline for this task and model
            raise InvalidRequest(f"modelscope.pipelines.pipeline(task={task!r}) has no pipeline for {path}: "
                                 f"{exc.args[0] if exc.args else exc}") from None
        except (ValueError, OSError, TypeError, RuntimeError, AttributeError, ImportError) as exc:
            raise InvalidRequest(f"modelscope.pipelines.pipeline(task={task!r}) could not load {path}: "
                                 f"{type(exc).__name__}: {exc}") from None
        self.task = task

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        if self.task in IMAGE_TASKS and args and isinstance(args[0], str):
            args = (read_image(args[0], "the first argument"), *args[1:])
        try:
            return self.pipeline(*args, **kwargs)
        # ModelScope checks its inputs with assert (the wrong type of input, say)
        except (ValueError, TypeError, KeyError, AssertionError) as exc:
            raise InvalidRequest(f"The {self.task} pipeline refused these arguments: {type(exc).__name__}: "
                                 f"{exc}") from None


def launcher(model_uid: str, model_spec: Any, **kwargs: Any) -> ModelScopePipelineModel:
    return ModelScopePipelineModel(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)
