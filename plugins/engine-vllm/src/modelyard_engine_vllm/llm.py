"""The vLLM LLM engine. Imported only inside the worker process.

What is vLLM's own: its `AsyncLLM` (created on the worker's event loop, in `start`), continuous
batching of every request in flight, sampling, stop strings and detokenizing. Calls into vLLM go
through `adapter`. The rest is core's (`modelyard.llm`): parameter checks, context checks, the
sandboxed chat template, reasoning split, usage, and chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from modelyard.llm import chat_template
from modelyard.llm.async_engine import AsyncLLMEngine, Delta
from modelyard.llm.engine import Generation
from modelyard.llm.params import ALL_PARAMS
from modelyard_engine_vllm import adapter, startup


class VllmLLM(chat_template.HFTokenizerPrompts, AsyncLLMEngine):
    launch_options = {**startup.ENGINE_OPTIONS,
                      "enable_prefix_caching": "reuse the KV cache of shared prompt prefixes",
                      **startup.CPU_OPTIONS}
    supported_params = ALL_PARAMS
    applies_stops = True

    def load(self) -> None:
        options = startup.engine_arguments(self.model_uid, self.kwargs)
        options.setdefault("max_model_len", self.context_length)
        self.engine_args = options
        import vllm  # noqa: F401  (imported here, in the loading thread: seconds)

    async def start(self) -> None:
        self.engine = startup.start_engine(self.model_uid, self.model_path, self.engine_args)
        self.tokenizer = adapter.tokenizer(self.engine)
        self.context_length = int(self.engine_args["max_model_len"])
        self.chat_template = self.registration.chat_template or getattr(self.tokenizer, "chat_template", None)
        self.bos_token_id = self.tokenizer.bos_token_id

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
            startup.raise_as_modelyard_error(exc, self.engine)
            raise
        finally:
            await outputs.aclose()
