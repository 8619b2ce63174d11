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

import os
from typing import Any

from modelyard.errors import InvalidRequest


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

    def local_model_path(self, hub_ids: bool = True) -> str:
        """`model_uri` as a path on this machine: a 400 that says so when there is none, or when a
        path does not exist. With `hub_ids`, a name that is not a path (a hub id) is given back as is."""
        path = (self.model_path or "").removeprefix("file://")
        if not path:
            raise InvalidRequest("This flexible model has no model_uri: give the path of the model's files.")
        looks_like_path = path.startswith(("/", "~", ".")) or not hub_ids
        expanded = os.path.expanduser(path)
        if looks_like_path and not os.path.exists(expanded):
            raise InvalidRequest(f"model_uri {path!r} does not exist on this machine.")
        return expanded

    def load(self) -> None:
        """Load weights or other state; called once in the worker before the model is READY."""

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement infer()")
