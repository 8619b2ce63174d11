"""Imported only inside the worker."""

from modelyard.flexible import FlexibleModel


class Pipeline(FlexibleModel):
    def infer(self, text: str):
        return {"launcher": "transformers (clash plugin)", "text": text}


def launcher(model_uid, model_spec, **kwargs):
    return Pipeline(model_uid=model_uid, config=kwargs)
