"""The worker's event loop: load the model, then answer calls until the server goes away.

Sync model methods run in a thread pool so many calls are in flight at once and the loop stays
free to answer pings and cancellations; coroutine methods run on the loop itself.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import inspect
import os
import socket
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelyard import jsonable
from modelyard.errors import InvalidRequest, ModelError, ModelyardError
from modelyard.plugins import get_plugins
from modelyard.worker import protocol as p
from modelyard.worker.loader import LoadedModel, load_model

CALL_THREADS = 16


class Worker:
    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="modelyard-call")
        self.tasks: dict[int, asyncio.Task] = {}
        self.loaded: LoadedModel | None = None
        self.signatures: dict[str, inspect.Signature | None] = {}
        # When each in-flight call last made progress (started, or yielded an item): health pings
        # report the oldest, so the server can tell a hung call from a busy worker.
        self.progress_at: dict[int, float] = {}

    def send_nowait(self, message: list[Any]) -> None:
        self.writer.write(p.pack(message))

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        """Called from the loading thread."""
        self.loop.call_soon_threadsafe(self.send_nowait, [p.PROGRESS, stage, fraction, message])

    async def load(self, launch: dict[str, Any]) -> bool:
        try:
            self.progress("loading", 0.75, "importing plugins")
            self.loaded = await self.loop.run_in_executor(
                self.pool, load_model, launch, get_plugins(), self.progress)
        except BaseException as exc:
            traceback.print_exc()
            error_type = exc.type if isinstance(exc, ModelyardError) else "launch_error"
            message = exc.message if isinstance(exc, ModelyardError) else f"{type(exc).__name__}: {exc}"
            await p.send(self.writer, [p.FAILED, error_type, message])
            await self.writer.drain()
            return False
        for name in self.loaded.abilities:
            method = getattr(self.loaded.model, name, None)
            try:
                self.signatures[name] = inspect.signature(method) if method is not None else None
            except (TypeError, ValueError):
                self.signatures[name] = None
        await p.send(self.writer, [p.READY, {"pid": os.getpid(), "abilities": self.loaded.abilities,
                                             **self.loaded.info}])
        return True

    def dispatch(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == p.CALL:
            _, rid, method, args, kwargs, mode = message
            self.progress_at[rid] = time.monotonic()
            task = self.loop.create_task(self.call(rid, method, args, kwargs, mode))
            self.tasks[rid] = task
            task.add_done_callback(lambda _t, rid=rid: self._forget(rid))
        elif kind == p.CANCEL:
            task = self.tasks.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == p.PING:
            now = time.monotonic()
            stalled = now - min(self.progress_at.values()) if self.progress_at else 0.0
            self.send_nowait([p.PONG, message[1], {"in_flight": len(self.tasks), "stalled_seconds": stalled}])

    def _forget(self, rid: int) -> None:
        self.tasks.pop(rid, None)
        self.progress_at.pop(rid, None)

    async def call(self, rid: int, name: str, args: list, kwargs: dict, mode: str) -> None:
        try:
            if name not in self.signatures:
                raise InvalidRequest(f"This model has no {name!r} ability; it has: "
                                     f"{', '.join(self.signatures) or 'none'}")
            method = getattr(self.loaded.model, name)
            signature = self.signatures[name]
            if signature is not None:
                try:
                    signature.bind(*args, **kwargs)
                except TypeError as exc:
                    raise InvalidRequest(f"Arguments do not fit {name}{signature}: {exc}") from None
            if inspect.iscoroutinefunction(method):
                result = await method(*args, **kwargs)
            else:
                result = await self.loop.run_in_executor(self.pool, functools.partial(method, *args, **kwargs))
            encode = jsonable.dumps if mode in (p.MODE_JSON, p.MODE_STREAM_JSON) else _as_is
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                if mode in (p.MODE_STREAM_JSON, p.MODE_STREAM):
                    await self.stream(rid, result, encode)
                    return
                result = await self.collect(rid, result)
            await p.send(self.writer, [p.RESULT, rid, encode(result)])
        except asyncio.CancelledError:
            pass  # the caller is gone; nobody waits for an answer
        except ModelyardError as exc:
            await p.send(self.writer, [p.ERROR, rid, exc.type, exc.status, exc.message])
        except jsonable.NotJSONable as exc:
            await p.send(self.writer, [p.ERROR, rid, ModelError.type, 500, f"{name}() returned {exc}"])
        except Exception as exc:
            traceback.print_exc()
            await p.send(self.writer, [p.ERROR, rid, ModelError.type, 500, f"{type(exc).__name__}: {exc}"])

    async def items(self, rid: int, result: Any) -> AsyncIterator[Any]:
        """The items of a sync or async generator; each one counts as progress of call `rid`."""
        if inspect.isasyncgen(result):
            try:
                async for item in result:
                    self.progress_at[rid] = time.monotonic()
                    yield item
            finally:
                await result.aclose()
            return
        done = object()
        try:
            while True:
                item = await self.loop.run_in_executor(self.pool, next, result, done)
                if item is done:
                    return
                self.progress_at[rid] = time.monotonic()
                yield item
        finally:
            result.close()  # a cancelled stream stops the model's generator at its next yield

    async def collect(self, rid: int, result: Any) -> list[Any]:
        return [item async for item in self.items(rid, result)]

    async def stream(self, rid: int, result: Any, encode: Callable[[Any], Any]) -> None:
        async for item in self.items(rid, result):
            await p.send(self.writer, [p.CHUNK, rid, encode(item)])
        await p.send(self.writer, [p.END, rid])


def _as_is(value: Any) -> Any:
    return value


async def serve(fd: int) -> bool:
    """Serve until the server closes the link; False when the launch failed."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # children of model code must not hold the server's lifeline open
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    worker = Worker(writer)
    incoming = p.messages(reader)
    first = await anext(incoming, None)
    if first is None or first[0] != p.LAUNCH:
        return False
    if not await worker.load(first[1]):
        return False
    async for message in incoming:
        worker.dispatch(message)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m modelyard.worker")
    parser.add_argument("--fd", type=int, required=True, help="the socket the server handed over")
    parser.add_argument("--model-uid", default="", help="shown in process listings")
    args = parser.parse_args(argv)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    served = runner(serve(args.fd))
    # The server is gone or the launch failed: leave now, even if a model thread still runs.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if served else 1)
