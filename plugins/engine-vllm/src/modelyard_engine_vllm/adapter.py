"""Every call into vLLM, in one place: its API moves between releases (written against 0.32).
Imported only inside the worker process."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from modelyard.errors import ModelError

ENGINE_CHECK_SECONDS = 1.0  # how often a request waiting for its first output checks that vLLM's engine lives


@dataclass
class Output:
    """One choice's news from vLLM: text since the last output, its token count, and why it ended."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None
    logprobs: list[dict[str, Any]] | None


def start_engine(model: str, *, pooling: bool = False, **engine_args: Any) -> Any:
    """An `AsyncLLM`, generating or (`pooling`) embedding; call on the event loop that will drive it."""
    from vllm import AsyncEngineArgs
    from vllm.config import StructuredOutputsConfig
    from vllm.v1.engine.async_llm import AsyncLLM

    if pooling:  # a model made for generating is converted to embed (its last token's state)
        engine_args.setdefault("runner", "pooling")
    else:
        # disable_any_whitespace is the engine's setting (a request's is ignored): without it a model
        # may fill a JSON schema with whitespace until max_tokens
        engine_args.setdefault("structured_outputs_config",
                               StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True))
    # vLLM's stats cost its frontend about a tenth of its CPU per token (measured at c16), for its
    # Prometheus metrics in this process, which nothing serves, and log lines that only its own
    # server asks for: modelyard's /metrics count requests and tokens
    engine_args["disable_log_stats"] = True
    engine = AsyncLLM.from_engine_args(AsyncEngineArgs(model=model, **engine_args))
    # vLLM reads its environment variables on every access, several times per token in its output
    # processing; its engine processes cache them once started, and so does this one: the worker
    # sets every variable before the engine starts (startup.engine_arguments)
    from vllm import envs

    envs.enable_envs_cache()
    return engine


def tokenizer(engine: Any) -> Any:
    return engine.get_tokenizer()


def sampling_params(*, max_tokens: int, n: int, temperature: float, top_p: float, top_k: int, seed: int | None,
                    stop: list[str], stop_token_ids: list[int], presence_penalty: float, frequency_penalty: float,
                    repetition_penalty: float, logprobs: int | None, min_tokens: int, ignore_eos: bool,
                    response_format: dict[str, Any] | None) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

    structured = None
    if response_format is not None:
        structured = (StructuredOutputsParams(json=response_format["schema"])
                      if response_format["type"] == "json_schema" else StructuredOutputsParams(json_object=True))
    return SamplingParams(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                          top_k=top_k if top_k > 0 else 0, seed=seed, stop=stop or None,
                          stop_token_ids=stop_token_ids or None, presence_penalty=presence_penalty,
                          frequency_penalty=frequency_penalty, repetition_penalty=repetition_penalty,
                          logprobs=logprobs, min_tokens=min_tokens, ignore_eos=ignore_eos,
                          structured_outputs=structured, output_kind=RequestOutputKind.DELTA)


def _logprobs(output: Any, tokenizer: Any, top: int) -> list[dict[str, Any]] | None:
    """vLLM's log-probabilities of a delta's tokens, as modelyard's chunks carry them."""
    if output.logprobs is None:
        return None

    def text(token_id: int, logprob: Any) -> str:
        return logprob.decoded_token if logprob.decoded_token is not None else tokenizer.decode([token_id])

    entries = []
    for token_id, alternatives in zip(output.token_ids, output.logprobs, strict=False):
        chosen = alternatives[token_id]
        likeliest = sorted(alternatives.items(), key=lambda item: -item[1].logprob)[:top]
        entries.append({"token": text(token_id, chosen), "logprob": float(chosen.logprob),
                        "top_logprobs": [{"token": text(t, lp), "logprob": float(lp.logprob)} for t, lp in likeliest]})
    return entries


async def _watched(engine: Any, outputs: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`outputs` (a request's), failing with vLLM's EngineDeadError if its engine core dies before
    the first one: vLLM tells the requests it holds when its engine dies, but one added while it
    dies may never hear of it (seen when the engine core died before the first request). Once a
    first output has come, vLLM's own error reaches the request."""
    from vllm.v1.engine.exceptions import EngineDeadError

    first = asyncio.ensure_future(anext(outputs))
    try:
        while not (await asyncio.wait({first}, timeout=ENGINE_CHECK_SECONDS))[0]:
            if errored(engine):
                raise EngineDeadError()
    except BaseException:
        if not first.done():
            first.cancel()  # vLLM's generator, cancelled, aborts its request
        elif not first.cancelled():
            first.exception()  # retrieved: nobody waits for it now
        raise
    try:
        try:
            yield first.result()
        except StopAsyncIteration:
            return
        async for output in outputs:
            yield output
    finally:
        await outputs.aclose()


async def generate(engine: Any, prompt_ids: list[int], params: Any, tokenizer: Any,
                   top_logprobs: int | None) -> AsyncIterator[Output]:
    """vLLM's deltas for one request; closing this generator aborts the request in vLLM."""
    from vllm import TokensPrompt

    request_id = uuid.uuid4().hex
    finished = False
    try:
        async with contextlib.aclosing(_watched(engine, engine.generate(
                TokensPrompt(prompt_token_ids=list(prompt_ids)), params, request_id))) as results:
            async for result in results:
                finished = result.finished  # before yielding: the consumer may stop at this output's last choice
                for output in result.outputs:
                    entries = _logprobs(output, tokenizer, top_logprobs or 0)
                    reason = output.finish_reason if output.finish_reason in ("stop", "length") else None
                    yield Output(output.index, output.text, len(output.token_ids), reason, entries)
    finally:
        if not finished:
            await engine.abort(request_id)
            # vLLM's own count says the request is gone from its batch
            print(f"vllm: aborted request {request_id}; {engine.output_processor.get_num_unfinished_requests()} "
                  "requests still unfinished in vLLM", file=sys.stderr, flush=True)


async def embed(engine: Any, prompt_ids: list[int], normalize: bool) -> bytes:
    """One input's vector from a pooling engine, as float32 bytes; `normalize`: of unit length."""
    import torch
    from vllm import PoolingParams, TokensPrompt

    request_id = uuid.uuid4().hex
    final = None
    try:
        async with contextlib.aclosing(_watched(engine, engine.encode(
                TokensPrompt(prompt_token_ids=list(prompt_ids)), PoolingParams(task="embed", use_activation=normalize),
                request_id))) as results:
            async for result in results:
                final = result
    finally:
        if final is None or not final.finished:
            await engine.abort(request_id)
    if final is None:
        raise ModelError("vLLM ended the embedding request without a vector")
    return final.outputs.data.to(torch.float32).contiguous().numpy().tobytes()


def max_model_len(engine: Any) -> int:
    return int(engine.model_config.max_model_len)


def validation_error(exc: BaseException) -> str | None:
    """vLLM's words when it refused a request's input (a prompt past max_model_len...), else None."""
    name = type(exc).__name__
    if name in ("VLLMValidationError", "ValueError") or isinstance(exc, ValueError):
        return str(exc)
    return None


def engine_died(exc: BaseException) -> bool:
    """Whether `exc` says vLLM's engine core is gone (it then answers nothing more)."""
    return type(exc).__name__ == "EngineDeadError"


def errored(engine: Any) -> bool:
    """Whether vLLM's engine is dead: it will answer nothing more."""
    return bool(engine.errored)


def shutdown(engine: Any) -> None:
    engine.shutdown(timeout=1)
