"""The shim: registers the transformers engine. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine

modelyard_contract = 1  # the plugin contract this plugin is written for


def match(registration, spec) -> str | None:
    quantization = (spec.quantization or "none").lower()
    if quantization not in ("none", "fp16", "bf16", "fp32"):
        return (f"quantization {spec.quantization!r} needs a quantization library; "
                "this engine serves unquantized weights")
    return None


@hookimpl
def register_engines(register):
    register(Engine(
        name="transformers",
        model_types=("LLM",),
        formats=("pytorch",),
        impl="modelyard_engine_transformers.llm:TransformersLLM",
        requirements=("transformers>=4.56", "torch"),  # into the model's env where the server lacks them
        match=match,
        priority=10,
    ))
