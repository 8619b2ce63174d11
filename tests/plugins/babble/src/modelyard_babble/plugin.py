"""The shim: registers the babble engine; it imports nothing of the engine itself."""

from modelyard import hookimpl
from modelyard.engines import Engine

modelyard_contract = 1


@hookimpl
def register_engines(register):
    register(Engine(name="babble", model_types=("LLM",), formats=("babble",),
                    impl="modelyard_babble.engine:BabbleLLM"))
