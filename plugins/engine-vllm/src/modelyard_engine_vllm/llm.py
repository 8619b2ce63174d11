"""The vLLM LLM engine. Imported only inside the worker process.

What is vLLM's own: its `AsyncLLM` (created on the worker's event loop, in `start`), continuous
batching of every request in flight, sampling, stop strings and detokenizing. Calls into vLLM go
through `adapter`. The rest is core's (`modelyard.llm`): parameter checks, context checks, the
sandboxed chat template, reasoning split, usage, and chunks.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest
from modelyard.llm import chat_template
from modelyard.llm.async_engine import AsyncLLMEngine, Delta
from modelyard.llm.engine import Generation
from modelyard.llm.params import ALL_PARAMS
from modelyard_engine_vllm import adapter, machine

ENGINE_OPTIONS = {
    "max_model_len": "context tokens (default: the registration's context_length)",
    "gpu_memory_utilization": "the share of GPU memory vLLM may take (default 0.9)",
    "tensor_parallel_size": "GPUs to split the model over",
    "dtype": "auto, float32, float16, bfloat16 (default auto)",
    "quantization": "the weights' quantization method (awq, gptq, fp8, ...; default: what the files say)",
    "enforce_eager": "no CUDA graphs (default true on CPU)",
    "max_num_seqs": "the most requests batched at once",
    "enable_prefix_caching": "reuse the KV cache of shared prompt prefixes",
    "seed": "the engine's seed",
}
CPU_OPTIONS = {
    "kv_cache_space": "GiB of memory for the KV cache on a CPU (VLLM_CPU_KVCACHE_SPACE; default 4)",
    "cpu_threads_bind": "cores the CPU build's threads bind to (VLLM_CPU_OMP_THREADS_BIND: auto, nobind, 0-3; "
                        "default auto, nobind on 2 cores or fewer)",
}


class VllmLLM(chat_template.HFTokenizerPrompts, AsyncLLMEngine):
    launch_options = {**ENGINE_OPTIONS, **CPU_OPTIONS}
    supported_params = ALL_PARAMS
    applies_stops = True

    def load(self) -> None:
        options = dict(self.kwargs)
        self._set_environment(options)
        options.setdefault("max_model_len", self.context_length)
        if machine.build() == "cpu":
            options.setdefault("enforce_eager", True)
        self.engine_args = options
        import vllm  # noqa: F401  (imported here, in the loading thread: seconds)

    def _set_environment(self, options: dict[str, Any]) -> None:
        """vLLM reads these when it starts: a private temporary folder (its IPC sockets and files stay out
        of /tmp), no usage reports, loopback only for its own sockets, and the CPU build's settings."""
        private = tempfile.mkdtemp(prefix=f"modelyard-vllm-{self.model_uid}-")
        atexit.register(shutil.rmtree, private, True)
        os.environ.update(TMPDIR=private, VLLM_RPC_BASE_PATH=private)
        for key, value in (("VLLM_NO_USAGE_STATS", "1"), ("VLLM_DO_NOT_TRACK", "1"), ("VLLM_HOST_IP", "127.0.0.1"),
                           ("GLOO_SOCKET_IFNAME", "lo")):
            os.environ.setdefault(key, value)
        if machine.build() == "cpu":
            os.environ["VLLM_TARGET_DEVICE"] = "cpu"
            space = options.pop("kv_cache_space", None) or os.environ.get("VLLM_CPU_KVCACHE_SPACE") or 4
            if isinstance(space, bool) or not isinstance(space, (int, float, str)) or float(space) <= 0:
                raise InvalidRequest(f"Launch option kv_cache_space must be a positive number of GiB, got {space!r}.")
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(space)
            bind = options.pop("cpu_threads_bind", None) or os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(bind or machine.default_threads_bind())
            threads = config.torch_threads()
            if threads:
                os.environ["OMP_NUM_THREADS"] = str(threads)
        else:
            for name in CPU_OPTIONS:
                if name in options:
                    raise InvalidRequest(f"Launch option {name} is for vLLM's CPU build; this is its CUDA build.")

    async def start(self) -> None:
        try:
            self.engine = adapter.start_engine(self.model_path, **self.engine_args)
        except (ValueError, TypeError) as exc:  # vLLM refused an option or the model: its words
            raise InvalidRequest(f"vLLM could not start {self.model_uid!r}: {exc}") from None
        self.tokenizer = adapter.tokenizer(self.engine)
        self.context_length = int(self.engine_args["max_model_len"])
        self.chat_template = self.registration.chat_template or getattr(self.tokenizer, "chat_template", None)
        self.bos_token_id = self.tokenizer.bos_token_id
        atexit.register(adapter.shutdown, self.engine)

    async def stream_deltas(self, prompt_ids: list[int], generation: Generation) -> AsyncIterator[Delta]:
        p = generation.params
        params = adapter.sampling_params(
            max_tokens=generation.max_tokens, n=p.n, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
            seed=p.seed, stop=self.stop_strings(generation),
            stop_token_ids=list(self.registration.stop_token_ids or []) + p.stop_token_ids,
            presence_penalty=p.presence_penalty, frequency_penalty=p.frequency_penalty,
            repetition_penalty=p.repetition_penalty, logprobs=p.logprobs, min_tokens=p.min_tokens,
            ignore_eos=p.ignore_eos, response_format=p.response_format)
        outputs = adapter.generate(self.engine, prompt_ids, params, self.tokenizer, p.logprobs)
        try:
            async for output in outputs:
                yield Delta(output.text, index=output.index, tokens=output.tokens,
                            finish_reason=output.finish_reason, logprobs=output.logprobs)
                if generation.cancelled.is_set():
                    return
        except Exception as exc:
            said = adapter.validation_error(exc)
            if said is None:
                raise
            raise InvalidRequest(f"vLLM refused the request: {said}") from None
        finally:
            await outputs.aclose()
