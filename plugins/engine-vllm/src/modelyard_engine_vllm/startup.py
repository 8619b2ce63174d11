"""How every vLLM engine of this plugin starts vLLM: the launch options they share, the process's
environment vLLM reads, and the `AsyncLLM` itself. Imported only inside the worker process."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest, ModelBroken
from modelyard_engine_vllm import adapter, machine

ENGINE_OPTIONS = {
    "max_model_len": "context tokens (default: the registration's context_length, or an embedding model's max_tokens)",
    "gpu_memory_utilization": "the share of GPU memory vLLM may take (default 0.9)",
    "tensor_parallel_size": "GPUs to split the model over",
    "dtype": "auto, float32, float16, bfloat16 (default auto)",
    "quantization": "the weights' quantization method (awq, gptq, fp8, ...; default: what the files say)",
    "enforce_eager": "no CUDA graphs (default true on CPU)",
    "max_num_seqs": "the most requests batched at once",
    "seed": "the engine's seed",
}
CPU_OPTIONS = {
    "kv_cache_space": "GiB of memory for the KV cache on a CPU (VLLM_CPU_KVCACHE_SPACE; default 4)",
    "cpu_threads_bind": "cores the CPU build's threads bind to (VLLM_CPU_OMP_THREADS_BIND: auto, nobind, 0-3; "
                        "default auto; on 2 cores, vLLM's engine processes share the second core, one thread)",
}

# The core vLLM's engine processes share once started, where engine_arguments chose one.
_shared_core: int | None = None


def engine_arguments(model_uid: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` (a launch's) as vLLM's engine arguments, once the environment vLLM reads when it
    starts is set: a private temporary folder (its IPC sockets and files stay out of /tmp), no usage
    reports, loopback only for its own sockets, and the CPU build's settings."""
    options = dict(options)
    private = tempfile.mkdtemp(prefix=f"modelyard-vllm-{model_uid}-")
    atexit.register(shutil.rmtree, private, True)
    os.environ.update(TMPDIR=private, VLLM_RPC_BASE_PATH=private)
    for key, value in (("VLLM_NO_USAGE_STATS", "1"), ("VLLM_DO_NOT_TRACK", "1"), ("VLLM_HOST_IP", "127.0.0.1"),
                       ("GLOO_SOCKET_IFNAME", "lo")):
        os.environ.setdefault(key, value)
    if machine.build() != "cpu":
        for name in CPU_OPTIONS:
            if name in options:
                raise InvalidRequest(f"Launch option {name} is for vLLM's CPU build; this is its CUDA build.")
        return options
    os.environ["VLLM_TARGET_DEVICE"] = "cpu"
    space = options.pop("kv_cache_space", None) or os.environ.get("VLLM_CPU_KVCACHE_SPACE") or 4
    if isinstance(space, bool) or not isinstance(space, (int, float, str)) or float(space) <= 0:
        raise InvalidRequest(f"Launch option kv_cache_space must be a positive number of GiB, got {space!r}.")
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(space)
    bind = options.pop("cpu_threads_bind", None) or os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(bind or machine.default_threads_bind())
    threads = config.torch_threads()
    global _shared_core
    _shared_core = None if bind else machine.shared_core(threads)
    if _shared_core is not None:
        threads = 1  # what one core fits
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    options.setdefault("enforce_eager", True)
    return options


def start_engine(model_uid: str, model_path: str, engine_args: dict[str, Any], *, pooling: bool = False) -> Any:
    """vLLM's engine for the model, on the running event loop; shut down when the worker exits."""
    try:
        engine = adapter.start_engine(model_path, pooling=pooling, **engine_args)
    except (ValueError, TypeError) as exc:  # vLLM refused an option or the model: its words
        raise InvalidRequest(f"vLLM could not start {model_uid!r}: {exc}") from None
    atexit.register(adapter.shutdown, engine)
    if _shared_core is not None:
        moved = machine.share_core(os.getpid(), _shared_core)
        print(f"modelyard: vLLM's engine processes {moved} share core {_shared_core} (2 cores here)",
              file=sys.stderr, flush=True)
    return engine


def raise_as_modelyard_error(exc: BaseException, engine: Any) -> None:
    """Raise what vLLM's `exc` means to modelyard, where it means something: its refusal of a
    request's input is a 400; an engine that is dead (whatever the exception says) ends the worker,
    for the restart policy."""
    if adapter.engine_died(exc) or adapter.errored(engine):
        raise ModelBroken(f"vLLM's engine died: {exc}") from exc
    said = adapter.validation_error(exc)
    if said is not None:
        raise InvalidRequest(f"vLLM refused the request: {said}") from None
