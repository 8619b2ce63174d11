"""The shim: registers the vLLM engine for LLMs and embedding models. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine
from modelyard_engine_vllm import machine

modelyard_contract = 1

FORMATS = ("pytorch", "safetensors", "awq", "gptq", "fp8")
# type -> (class, priority with a GPU): for LLMs vLLM is the throughput choice where a GPU serves
# it; for embeddings sentence_transformers (10), which reads every sentence-transformers model,
# stays first. On a CPU vLLM serves only when named.
IMPLEMENTATIONS = {"LLM": ("modelyard_engine_vllm.llm:VllmLLM", 20),
                   "embedding": ("modelyard_engine_vllm.embedding:VllmEmbedding", 5)}


@hookimpl
def register_engines(register):
    for model_type, (impl, gpu_priority) in IMPLEMENTATIONS.items():
        register(Engine(
            name="vllm",
            model_types=(model_type,),
            formats=FORMATS,
            impl=impl,
            requirements=machine.requirements(),
            excluded_packages=machine.excluded_packages(),
            constraints=machine.constraints(),
            hardware=machine.why_not_here,
            match=machine.why_not_format,
            priority=gpu_priority if machine.has_gpu() else -10,
            aliases=("vLLM",),
        ))
