"""The shim: registers the llama.cpp engine. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine

modelyard_contract = 1

GGUF_FORMATS = ("ggufv2", "gguf")


@hookimpl
def register_engines(register):
    register(Engine(
        name="llama.cpp",
        model_types=("LLM",),
        formats=GGUF_FORMATS,
        impl="modelyard_engine_llamacpp.llm:LlamaCppLLM",
        requirements=("llama-cpp-python>=0.3",),
        priority=10,
        aliases=("llama_cpp", "llamacpp", "llama-cpp-python"),
    ))
