"""Generation parameters: OpenAI's names, validated, and refused by name when an engine cannot honour them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import InvalidRequest

# Request keys that are routing or shaping, not generation parameters: the engine never sees them.
# `stream` is the transport's choice (the route streams or collects the same chunks), never the engine's.
NOT_PARAMS = frozenset({"model", "messages", "prompt", "user", "stream", "stream_options"})

ALL_PARAMS = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "chat_template_kwargs", "n", "logprobs",
    "top_logprobs", "min_tokens", "ignore_eos", "response_format",
})
#: What an engine honours unless it says otherwise: several choices, log-probabilities, a floor on
#: the answer's length and structured output need the engine's own support, and serving one choice
#: for n=2 (or free text for a JSON schema) would be a silent lie.
BASE_PARAMS = ALL_PARAMS - {"n", "logprobs", "top_logprobs", "min_tokens", "ignore_eos", "response_format"}
MAX_N = 16
MAX_TOP_LOGPROBS = 20


@dataclass
class GenerateParams:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    n: int = 1
    #: None: no log-probabilities; k: each token's, with its k most likely alternatives
    logprobs: int | None = None
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    #: the fewest tokens before an end token or stop string may end the answer
    min_tokens: int = 0
    #: generate past the end token, up to max_tokens
    ignore_eos: bool = False
    #: None: free text; {"type": "json_object"}, or {"type": "json_schema", "schema": {...}}
    response_format: dict[str, Any] | None = None


def _number(name: str, value: Any, low: float | None = None, high: float | None = None, *, integer: bool = False,
            low_open: bool = False) -> float | int:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}.")
    if not math.isfinite(value):  # NaN passes every comparison below; infinity is no setting either
        raise InvalidRequest(f"{name} must be a finite number, got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        raise InvalidRequest(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}.")
    if high is not None and value > high:
        raise InvalidRequest(f"{name} must be <= {high:g}, got {value!r}.")
    return value


def parse_params(config: dict[str, Any] | None, supported: frozenset[str]) -> GenerateParams:
    """Validate a request's generation parameters; a 400 names any the engine cannot honour."""
    given = {k: v for k, v in (config or {}).items() if v is not None and k not in NOT_PARAMS}
    if "max_completion_tokens" in given:
        if "max_tokens" in given and given["max_tokens"] != given["max_completion_tokens"]:
            raise InvalidRequest("max_tokens and max_completion_tokens disagree; give one of them.")
        given["max_tokens"] = given.pop("max_completion_tokens")
    # settings that ask for nothing beyond the default are honoured by every engine
    if given.get("n", 1) == 1:
        given.pop("n", None)
    if given.get("logprobs") is False:
        given.pop("logprobs")
    if given.get("min_tokens") == 0:
        given.pop("min_tokens")
    if given.get("ignore_eos") is False:
        given.pop("ignore_eos")
    if isinstance(given.get("response_format"), dict) and given["response_format"].get("type") == "text":
        given.pop("response_format")
    unknown = sorted(set(given) - (supported & ALL_PARAMS))
    if unknown:
        raise InvalidRequest(
            f"Unsupported parameter{'s' if len(unknown) > 1 else ''} for this model: {', '.join(unknown)}. "
            f"It honours: {', '.join(sorted((supported & ALL_PARAMS) - {'max_completion_tokens'}))}.")
    p = GenerateParams()
    if "max_tokens" in given:
        p.max_tokens = int(_number("max_tokens", given["max_tokens"], 1, integer=True))
    if "temperature" in given:
        p.temperature = float(_number("temperature", given["temperature"], 0, 2))
    if "top_p" in given:
        p.top_p = float(_number("top_p", given["top_p"], 0, 1, low_open=True))
    if "top_k" in given:
        p.top_k = int(_number("top_k", given["top_k"], -1, integer=True))
        p.top_k = max(p.top_k, 0)  # -1 (vLLM's "off") and 0 both mean no top-k
    if "seed" in given:
        p.seed = int(_number("seed", given["seed"], 0, integer=True))
    if "presence_penalty" in given:
        p.presence_penalty = float(_number("presence_penalty", given["presence_penalty"], -2, 2))
    if "frequency_penalty" in given:
        p.frequency_penalty = float(_number("frequency_penalty", given["frequency_penalty"], -2, 2))
    if "repetition_penalty" in given:
        p.repetition_penalty = float(_number("repetition_penalty", given["repetition_penalty"], 0, 10,
                                             low_open=True))
    if "stop" in given:
        stop = given["stop"]
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise InvalidRequest("stop must be a non-empty string or a list of them.")
        p.stop = stop
    if "stop_token_ids" in given:
        ids = given["stop_token_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise InvalidRequest("stop_token_ids must be a list of integers.")
        p.stop_token_ids = ids
    if "n" in given:
        p.n = int(_number("n", given["n"], 1, MAX_N, integer=True))
    if "top_logprobs" in given and "logprobs" not in given:
        raise InvalidRequest("top_logprobs needs logprobs: true.")
    if "logprobs" in given:
        # chat's form is logprobs: true with top_logprobs: k; the legacy completions' form is logprobs: k
        value = given["logprobs"]
        top = given.get("top_logprobs", 0) if value is True else value
        p.logprobs = int(_number("top_logprobs" if value is True else "logprobs", top, 0, MAX_TOP_LOGPROBS,
                                 integer=True))
    if "min_tokens" in given:
        p.min_tokens = int(_number("min_tokens", given["min_tokens"], 0, integer=True))
        if p.max_tokens is not None and p.min_tokens > p.max_tokens:
            raise InvalidRequest(f"min_tokens ({p.min_tokens}) is more than max_tokens ({p.max_tokens}).")
    if "ignore_eos" in given:
        if not isinstance(given["ignore_eos"], bool):
            raise InvalidRequest(f"ignore_eos must be true or false, got {given['ignore_eos']!r}.")
        p.ignore_eos = given["ignore_eos"]
    if "response_format" in given:
        p.response_format = _response_format(given["response_format"])
    if "chat_template_kwargs" in given:
        if not isinstance(given["chat_template_kwargs"], dict):
            raise InvalidRequest("chat_template_kwargs must be an object.")
        p.chat_template_kwargs = given["chat_template_kwargs"]
    return p


def _response_format(value: Any) -> dict[str, Any]:
    """OpenAI's response_format, checked: json_object, or json_schema with its schema."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        wrapper = value.get("json_schema")
        schema = wrapper.get("schema") if isinstance(wrapper, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format json_schema needs json_schema.schema: the JSON Schema object "
                                 "the answer must match.")
        return {"type": "json_schema", "schema": schema}
    raise InvalidRequest("response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                         "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}.")
