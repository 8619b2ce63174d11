"""Driving an engine in-process as the worker does: its coroutines and async generators on one
event loop of their own (an async library is often bound to the loop it started on), from any
number of test threads."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="modelyard-testing-loop", daemon=True).start()
        return _loop


def settle(value: Any) -> Any:
    """`value`, awaited on the background loop when it is a coroutine (an async ability's call)."""
    if inspect.isawaitable(value):
        async def wait() -> Any:
            return await value
        return asyncio.run_coroutine_threadsafe(wait(), background_loop()).result()
    return value


class Stream:
    """An answer's chunks one by one, whether the engine streams them sync or async."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.is_async = inspect.isasyncgen(result)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        if not self.is_async:
            return next(self.result)
        try:
            return asyncio.run_coroutine_threadsafe(anext(self.result), background_loop()).result()
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        if self.is_async:
            asyncio.run_coroutine_threadsafe(self.result.aclose(), background_loop()).result()
        else:
            self.result.close()
