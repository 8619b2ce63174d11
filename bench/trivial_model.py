"""The trivial flexible model the request-path bench calls: it returns what it is given."""

from modelyard.flexible import FlexibleModel


class Echo(FlexibleModel):
    def infer(self, text):
        return {"echo": text}


def launcher(model_uid, model_spec, **kwargs):
    return Echo(model_uid=model_uid, config=kwargs)
