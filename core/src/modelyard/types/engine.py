"""The base every engine's model class shares, in the worker: construction, declared launch
options, loading, and refusing by name what it cannot honour.

Each model type has its own base on top (`LLMEngine`, `EmbeddingEngine`, `RerankEngine`,
`ImageEngine`, `AudioEngine`, `VideoEngine`): the type's abilities, their argument checks and their
typed results live there, so an engine implements only what differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.types import ModelSpec, Registration


class EngineBase:
    #: The launch options this engine takes (name -> what it does). None: every keyword of the
    #: launch goes to the engine as it is; a mapping: any other is a 400 naming these.
    launch_options: Mapping[str, str] | None = None
    #: The request parameters, beyond an ability's own arguments, this engine honours.
    supported_params: frozenset[str] = frozenset()
    #: How many calls may run the model at once (see modelyard.worker); None: the worker's threads.
    concurrency: int | None = None

    def __init__(self, model_uid: str, registration: Registration, spec: ModelSpec, model_path: str,
                 **kwargs: Any):
        if self.launch_options is not None:
            unknown = sorted(set(kwargs) - set(self.launch_options))
            if unknown:
                offered = "; ".join(f"{k}: {v}" for k, v in self.launch_options.items()) or "none"
                raise InvalidRequest(f"{type(self).__name__} takes no launch option {', '.join(map(repr, unknown))}. "
                                     f"Its options: {offered}.")
        self.model_uid = model_uid
        self.registration = registration
        self.spec = spec
        self.model_path = model_path
        self.kwargs = kwargs

    def load(self) -> None:
        """Load the weights; called once in the worker before the model is READY."""
        raise NotImplementedError(f"{type(self).__name__} does not implement load()")

    def refuse_unsupported(self, params: Mapping[str, Any] | None, ability: str) -> dict[str, Any]:
        """`params` without the unset ones, or a 400 naming each one this engine cannot honour."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.supported_params))
        if unknown:
            honoured = ", ".join(sorted(self.supported_params)) or "none"
            raise InvalidRequest(f"This model's engine cannot honour {', '.join(unknown)} for {ability}; "
                                 f"leave them out (it honours: {honoured}).")
        return given


def check_texts(value: Any, what: str, *, allow_one: bool = True) -> list[str]:
    """A non-empty list of strings (or one string, as a list of one), or a 400 saying what is wrong."""
    if allow_one and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(f"{what} must be a non-empty list of strings.")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(f"{what}[{i}] must be a string, not {type(item).__name__}.")
    return value


def check_prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("prompt must be a non-empty string.")
    return value


def check_count(value: Any, what: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidRequest(f"{what} must be a whole number from 1 to {most}, got {value!r}.")
    return value


def check_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise InvalidRequest(f"{what} must be non-empty bytes.")
    return bytes(value)


def parse_size(size: Any, default: tuple[int, int] | None = None, most: int = 4096) -> tuple[int, int] | None:
    """OpenAI's `size` ("1024x768") as (width, height); `default` when it is not given."""
    if size is None:
        return default
    parts = str(size).lower().split("x") if isinstance(size, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdecimal() for p in parts):
        raise InvalidRequest(f"size must be WIDTHxHEIGHT in pixels, such as '512x512', got {size!r}.")
    width, height = int(parts[0]), int(parts[1])
    if not (1 <= width <= most and 1 <= height <= most):
        raise InvalidRequest(f"size {size!r} is out of range: each side from 1 to {most} pixels.")
    return width, height


def ranked(scores: Iterable[float]) -> list[tuple[int, float]]:
    """(index, score) pairs, best first; equal scores keep their input order."""
    return sorted(enumerate(float(s) for s in scores), key=lambda pair: -pair[1])
