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
import traceback
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

    def send_nowait(self, message: list[Any]) -> None:
        self.writer.write(p.pack(message))

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        """Called from the loading thread."""
        self.loop.call_soon_threadsafe(self.send_nowait, [p.PROGRESS, stage, fraction, message])

    async def load(self, launch: dict[str, Any]) -> bool:
        try:
            self.progress("loading", 0.1, "importing plugins")
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
            _, rid, method, args, kwargs, json_result = message
            task = self.loop.create_task(self.call(rid, method, args, kwargs, json_result))
            self.tasks[rid] = task
            task.add_done_callback(lambda _t, rid=rid: self.tasks.pop(rid, None))
        elif kind == p.CANCEL:
            task = self.tasks.get(message[1])
            if task is not None:
                task.cancel()
        elif kind == p.PING:
            self.send_nowait([p.PONG, message[1]])

    async def call(self, rid: int, name: str, args: list, kwargs: dict, json_result: bool) -> None:
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
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                await self.stream(rid, result, json_result)
                return
            value = jsonable.dumps(result) if json_result else result
            await p.send(self.writer, [p.RESULT, rid, value])
        except asyncio.CancelledError:
            pass  # the caller is gone; nobody waits for an answer
        except ModelyardError as exc:
            await p.send(self.writer, [p.ERROR, rid, exc.type, exc.status, exc.message])
        except jsonable.NotJSONable as exc:
            await p.send(self.writer, [p.ERROR, rid, ModelError.type, 500, f"{name}() returned {exc}"])
        except Exception as exc:
            traceback.print_exc()
            await p.send(self.writer, [p.ERROR, rid, ModelError.type, 500, f"{type(exc).__name__}: {exc}"])

    async def stream(self, rid: int, result: Any, json_result: bool) -> None:
        encode = jsonable.dumps if json_result else (lambda v: v)
        if inspect.isasyncgen(result):
            try:
                async for item in result:
                    await p.send(self.writer, [p.CHUNK, rid, encode(item)])
            finally:
                await result.aclose()
        else:
            done = object()
            try:
                while True:
                    item = await self.loop.run_in_executor(self.pool, next, result, done)
                    if item is done:
                        break
                    await p.send(self.writer, [p.CHUNK, rid, encode(item)])
            finally:
                result.close()
        await p.send(self.writer, [p.END, rid])


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
