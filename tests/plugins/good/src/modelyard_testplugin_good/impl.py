"""The implementation: imported only inside the worker."""

import os

from modelyard.flexible import FlexibleModel
from modelyard_testplugin_good import marker  # noqa: F401


class Echo(FlexibleModel):
    def infer(self, text: str):
        return {"echo": text, "prefix": self.config.get("prefix", ""), "pid": os.getpid()}


def launcher(model_uid, model_spec, **kwargs):
    return Echo(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)
