"""The transformers LLM engine. Imported only inside the worker process.

What is transformers' own lives here: loading, tokenizing, and the two ways to generate. By
default concurrent requests share the model's steps: core's `ContinuousBatcher` runs the batch,
with this engine's steps (`batch.py`: one KV cache for the batch, a sampler per request), up to
the launch option `max_num_seqs` (default 16) at once. With `max_num_seqs: 1`, or for a model whose
cache cannot be batched here, `model.generate` with its streamer, stopping criterion and logits
processors serves one request after another in core's `GeneratingThread`. Either way tokens come
back through core's `TokenHandover` and `Detokenizer`, and chat templates render in core's sandbox.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

from modelyard import config
from modelyard.errors import InvalidRequest

config.omp_threads_from_env()

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
)
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from modelyard.llm import chat_template  # noqa: E402
from modelyard.llm.engine import Generation, LLMEngine  # noqa: E402
from modelyard.llm.handover import Detokenizer, GeneratingThread, TokenHandover  # noqa: E402
from modelyard.llm.scheduler import ContinuousBatcher  # noqa: E402
from modelyard_engine_transformers.batch import TransformersBatchSteps, batchable  # noqa: E402

DEFAULT_MAX_NUM_SEQS = 16


class _TokenQueue(TokenHandover, BaseStreamer):
    """transformers' streamer, handing token ids over; its first `put` is the prompt, not a token."""

    def __init__(self, window: float) -> None:
        super().__init__(window)
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        super().put(value.reshape(-1).tolist())


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _PresenceFrequencyPenalty(LogitsProcessor):
    """OpenAI's penalties, over the tokens generated so far (not the prompt)."""

    def __init__(self, prompt_len: int, presence: float, frequency: float) -> None:
        self.prompt_len, self.presence, self.frequency = prompt_len, presence, frequency

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_len:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class TransformersLLM(chat_template.HFTokenizerPrompts, LLMEngine):
    # What a launch may pass on to from_pretrained; anything else is a 400 naming these.
    launch_options = {
        "torch_threads": "threads torch uses for this model (default MODELYARD_TORCH_THREADS)",
        "torch_dtype": "the weights' dtype: auto, float32, bfloat16, float16",
        "dtype": "the same, in newer transformers' name",
        "device_map": "where the weights go (auto, cpu, cuda:0, ...)",
        "attn_implementation": "eager, sdpa, flash_attention_2",
        "trust_remote_code": "run the repository's own model code (an admin key only)",
        "revision": "the hub revision of the weights",
        "low_cpu_mem_usage": "load the weights with less peak memory",
        "max_num_seqs": f"the most requests generating together (default {DEFAULT_MAX_NUM_SEQS}; 1: one at a time)",
    }

    def load(self) -> None:
        self.threads = config.torch_threads(self.kwargs.pop("torch_threads", None))
        max_num_seqs = self.kwargs.pop("max_num_seqs", DEFAULT_MAX_NUM_SEQS)
        if isinstance(max_num_seqs, str) and max_num_seqs.isdigit():  # as a command line gives it
            max_num_seqs = int(max_num_seqs)
        if isinstance(max_num_seqs, bool) or not isinstance(max_num_seqs, int) or max_num_seqs < 1:
            raise InvalidRequest(f"max_num_seqs must be a positive integer, got {max_num_seqs!r}.")
        if self.threads:
            torch.set_num_threads(self.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, **self.kwargs).eval()
        self.generating = GeneratingThread(f"generate-{self.model_uid}", self._set_up_generating_thread)
        self.batcher: ContinuousBatcher | None = None
        if max_num_seqs > 1:
            why_not = batchable(self.model)
            if why_not is None:
                self.batcher = ContinuousBatcher(f"batch-{self.model_uid}", TransformersBatchSteps(self.model),
                                                 max_num_seqs, self._set_up_generating_thread)
            else:
                print(f"modelyard: requests to this model generate one at a time: {why_not}", file=sys.stderr,
                      flush=True)
        self.stream_window = config.stream_window()
        self.chat_template = self.registration.chat_template or getattr(self.tokenizer, "chat_template", None)
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if max_positions:
            self.context_length = min(self.context_length, max_positions)
        ends = set(self.registration.stop_token_ids or [])
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                ends.add(source)
            elif source:
                ends.update(source)
        self.end_ids = sorted(ends)
        self.bos_token_id = self.tokenizer.bos_token_id
        # a token's text in the vocabulary is at least as long in UTF-8 as the text it decodes to
        # (byte-level pieces like 'Ġ' take 2 bytes for 1), so this bound never refuses a prompt that fits
        self.max_token_bytes = max((len(piece.encode()) for piece in self.tokenizer.get_vocab()), default=0) or None
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (
            self.end_ids[0] if self.end_ids else 0)

    def _set_up_generating_thread(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)

    def stream_tokens(self, prompt_ids: list[int], generation: Generation) -> Iterator[list[str]]:
        params = generation.params
        end_ids = sorted(set(self.end_ids) | set(params.stop_token_ids))
        detokenizer = Detokenizer(lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True), end_ids,
                                  generation)
        if self.batcher is not None:
            handover = TokenHandover(self.stream_window)
            return self.batcher.stream(prompt_ids, generation, handover, detokenizer, set(end_ids))
        streamer = _TokenQueue(self.stream_window)
        processors = LogitsProcessorList()
        if params.presence_penalty or params.frequency_penalty:
            processors.append(_PresenceFrequencyPenalty(len(prompt_ids), params.presence_penalty,
                                                        params.frequency_penalty))
        sampling = params.temperature > 0
        kwargs: dict[str, Any] = dict(
            input_ids=torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=generation.max_tokens, do_sample=sampling, streamer=streamer,
            stopping_criteria=[_Cancelled(generation.cancelled)], logits_processor=processors,
            eos_token_id=end_ids or None, pad_token_id=self.pad_id,
            repetition_penalty=params.repetition_penalty,
        )
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)

        def generate() -> None:
            with torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                self.model.generate(**kwargs)

        return self.generating.stream(generate, streamer, detokenizer, generation)
