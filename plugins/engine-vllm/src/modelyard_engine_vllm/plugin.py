"""The shim: registers the vLLM engine for LLMs. Imports no ML library."""

from modelyard import hookimpl
from modelyard.engines import Engine
from modelyard_engine_vllm import machine

modelyard_contract = 1

FORMATS = ("pytorch", "safetensors", "awq", "gptq", "fp8")


@hookimpl
def register_engines(register):
    register(Engine(
        name="vllm",
        model_types=("LLM",),
        formats=FORMATS,
        impl="modelyard_engine_vllm.llm:VllmLLM",
        requirements=machine.requirements(),
        excluded_packages=machine.excluded_packages(),
        constraints=machine.constraints(),
        hardware=machine.why_not_here,
        # chosen without model_engine only where a GPU serves it; on a CPU it serves when named
        priority=20 if machine.has_gpu() else -10,
        aliases=("vLLM",),
    ))
