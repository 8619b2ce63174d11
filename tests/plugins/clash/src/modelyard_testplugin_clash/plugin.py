"""A launcher plugin whose entry point is named `transformers` (Xinference's pipeline launcher
name), next to the engine plugin of that name; it also makes the mistakes the contract reports."""

from modelyard import hookimpl
from modelyard.engines import Engine

modelyard_contract = 1


@hookimpl
def register_flexible_launchers(register):
    register("transformers", "modelyard_testplugin_clash.impl:launcher")


@hookimpl
def register_engines(register):
    # the good test plugin registers this name for embeddings too
    register(Engine(name="shared-name", model_types=("embedding",), impl="modelyard_testplugin_clash.impl:Nothing"))


@hookimpl
def register_models(register):
    register("embedding", {"model_name": "half-registered", "model_specs": [{"model_format": "pytorch"}]})
    raise RuntimeError("the catalogue file is missing")


@hookimpl
def register_engine(register):  # misspelled: the hook is register_engines
    register(Engine(name="never-registered", model_types=("LLM",), impl="x:y"))
