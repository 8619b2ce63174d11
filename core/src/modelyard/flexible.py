"""The base class flexible models subclass: any Python inference code behind `infer`.

A launcher written for Xinference ports by changing one import:

    from modelyard.flexible import FlexibleModel

    class Scorer(FlexibleModel):
        def load(self):
            self.words = self.config.get("pos", [])
        def infer(self, text):
            return {"score": sum(w in self.words for w in text.split())}

    def launcher(model_uid, model_spec, **kwargs):
        return Scorer(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)

`infer` may be a plain function, a coroutine function, or return a generator (streamed).
"""

from __future__ import annotations

from typing import Any


class FlexibleModel:
    #: How many calls may run this model at once; None: as many as the worker's threads. Code that
    #: is not thread-safe (YOLO, most pipelines) says 1, and the worker serialises its calls.
    concurrency: int | None = None

    def __init__(self, model_uid: str, model_path: str | None = None, config: dict[str, Any] | None = None,
                 **kwargs: Any):
        self.model_uid = model_uid
        self.model_path = model_path
        self.config = dict(config or {})
        self.device = kwargs.pop("device", None)
        self.kwargs = kwargs

    def load(self) -> None:
        """Load weights or other state; called once in the worker before the model is READY."""

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement infer()")
