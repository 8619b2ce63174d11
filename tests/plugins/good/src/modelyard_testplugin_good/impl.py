"""The implementation: imported only inside the worker."""

import os

from modelyard.flexible import FlexibleModel
from modelyard_testplugin_good import marker  # noqa: F401


class Echo(FlexibleModel):
    def infer(self, text: str, words: bool = False, as_bytes: bool = False):
        if words:
            return ({"word": w} for w in text.split())
        if as_bytes:
            return (w.encode() + b"|" for w in text.split())
        return {"echo": text, "prefix": self.config.get("prefix", ""), "pid": os.getpid()}


def launcher(model_uid, model_spec, **kwargs):
    return Echo(model_uid=model_uid, model_path=model_spec.model_uri, config=kwargs)


class DemoVersion(FlexibleModel):
    def infer(self):
        import demo_pkg

        return {"demo_pkg": demo_pkg.__version__}


def demo_launcher(model_uid, model_spec, **kwargs):
    return DemoVersion(model_uid=model_uid, config=kwargs)
