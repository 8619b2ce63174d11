"""The base every engine's model class shares, in the worker: construction, declared launch
options, loading, and refusing by name what it cannot honour.

Each model type has its own base on top (`LLMEngine`, `EmbeddingEngine`, `RerankEngine`,
`ImageEngine`, `AudioEngine`, `VideoEngine`): the type's abilities, their argument checks and their
typed results live there, so an engine implements only what differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from modelyard.batching import Batcher
from modelyard.errors import InvalidRequest
from modelyard.types import ModelSpec, Registration


class EngineBase:
    #: The launch options this engine takes (name -> what it does). None: every keyword of the
    #: launch goes to the engine as it is; a mapping: any other is a 400 naming these.
    launch_options: Mapping[str, str] | None = None
    #: The launch options its type's base takes for itself (batching...), whatever the engine declares.
    base_launch_options: Mapping[str, str] = {}
    #: The request parameters, beyond an ability's own arguments, this engine honours.
    supported_params: frozenset[str] = frozenset()
    #: How many calls may run the model at once (see modelyard.worker); None: the worker's threads.
    concurrency: int | None = None

    def __init__(self, model_uid: str, registration: Registration, spec: ModelSpec, model_path: str,
                 **kwargs: Any):
        if self.launch_options is not None:
            options = {**self.base_launch_options, **self.launch_options}
            unknown = sorted(set(kwargs) - set(options))
            if unknown:
                offered = "; ".join(f"{k}: {v}" for k, v in options.items()) or "none"
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

    async def start(self) -> None:
        """Called once on the worker's event loop after `load`, before the model is READY: where a
        library's engine must be created on the loop that drives it (vLLM's `AsyncLLM`)."""

    def refuse_unsupported(self, params: Mapping[str, Any] | None, ability: str) -> dict[str, Any]:
        """`params` without the unset ones, or a 400 naming each one this engine cannot honour."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.supported_params))
        if unknown:
            honoured = ", ".join(sorted(self.supported_params)) or "none"
            raise InvalidRequest(f"This model's engine cannot honour {', '.join(unknown)} for {ability}; "
                                 f"leave them out (it honours: {honoured}).")
        return given


class BatchingEngine(EngineBase):
    """An engine whose calls are rows (texts, query-document pairs) that concurrent requests share:
    the base gathers them into engine calls (`modelyard.batching`). Launch options `batch_size`
    (rows per engine call) and `batch_wait_ms` (how long a batch may wait for the clients of the
    one before it to send their next rows; never for a lone client) tune it."""

    #: rows per engine call, unless the launch says otherwise
    batch_size: int = 32
    batch_wait_ms: float = 5.0
    base_launch_options = {
        "batch_size": "rows per engine call when concurrent requests are gathered (default 32)",
        "batch_wait_ms": "milliseconds a batch waits for the clients of the one before to come back (default 5)",
    }

    def __init__(self, model_uid: str, registration: Registration, spec: ModelSpec, model_path: str,
                 **kwargs: Any):
        super().__init__(model_uid, registration, spec, model_path, **kwargs)
        size = self.kwargs.pop("batch_size", self.batch_size)
        wait = self.kwargs.pop("batch_wait_ms", self.batch_wait_ms)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 4096:
            raise InvalidRequest(f"batch_size must be a whole number from 1 to 4096, got {size!r}.")
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
            raise InvalidRequest(f"batch_wait_ms must be a number of milliseconds from 0 to 1000, got {wait!r}.")
        self.batch_size, self.batch_wait_ms = size, float(wait)
        self._batcher: Batcher | None = None

    def set_up_batch_thread(self) -> None:
        """Called once in the thread that runs the engine's batches (torch's per-thread settings...)."""

    def run_rows(self, rows: list[Any], params: dict[str, Any]) -> Sequence[Any]:
        """One output per row: the engine call for one batch, in the batch thread."""
        raise NotImplementedError

    def batcher(self) -> Batcher:
        if self._batcher is None:
            self._batcher = Batcher(lambda batch, key: self.run_rows(batch, dict(key)), max_rows=self.batch_size,
                                    wait=self.batch_wait_ms / 1000, name=f"batch-{self.model_uid}",
                                    initializer=self.set_up_batch_thread)
        return self._batcher

    async def gathered(self, rows: Sequence[Any], params: Mapping[str, Any]) -> list[Any]:
        """The outputs of `rows`, computed in batches with other requests' rows of the same params."""
        try:
            key = tuple(sorted(params.items()))
            hash(key)
        except TypeError:
            raise InvalidRequest("Request parameters must be plain values (strings, numbers, booleans).") from None
        return await self.batcher().submit(rows, key)


def flag_option(value: Any, name: str) -> bool:
    """A launch option that must be true or false: `value`, or a 400 naming the option."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"Launch option {name} must be true or false, got {value!r}.")
    return value


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
