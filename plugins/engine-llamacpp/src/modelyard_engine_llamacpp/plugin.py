"""The shim: registers the llama.cpp engine for LLMs and embeddings. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine
from modelyard_engine_llamacpp.files import hub_files

modelyard_contract = 1

GGUF_FORMATS = ("ggufv2", "gguf")

IMPLEMENTATIONS = {"LLM": "modelyard_engine_llamacpp.llm:LlamaCppLLM",
                   "embedding": "modelyard_engine_llamacpp.embedding:LlamaCppEmbedding"}


@hookimpl
def register_engines(register):
    for model_type, impl in IMPLEMENTATIONS.items():  # one engine, one class per type
        register(Engine(
            name="llama.cpp",
            model_types=(model_type,),
            formats=GGUF_FORMATS,
            impl=impl,
            requirements=("llama-cpp-python>=0.3",),
            files=hub_files,
            priority=10,
            aliases=("llama_cpp", "llamacpp", "llama-cpp-python"),
        ))
